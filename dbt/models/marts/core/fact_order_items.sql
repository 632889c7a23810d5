{#-
    Order lines with prices. Payload stores no price on a line, so:
    - unit_price_usd is the variant's price, else the product's (current catalog price);
    - line_total_usd allocates the order's amount across its lines in proportion to
      unit price x quantity (lines with no known price weigh 0; if no line of the order has a
      price, by quantity), in whole cents, by the largest-remainder method: each line gets the
      floor of its exact share, and the cents left over go one each to the lines with the largest
      fractional remainders (ties: lowest line number). Line totals add up to the order amount
      exactly.
    Incremental per order (delete+insert on order_id): an order is recomputed when it changed,
    when a product or variant it references changed (prices move the allocation) or when such a
    product/variant vanished; lines that no longer exist upstream are deleted by the post-hook.
    Each source has its own watermark (order_updated_at, product_updated_at,
    variant_updated_at: the newest version of each already in this table), so any order of
    subset runs (`source:ecommerce.products+`, then `source:ecommerce.orders+`, ...) ends with
    the rows of a full refresh.
-#}
{{ config(**incremental_fact_config('order_id', 'order_date', 'stg_order_items', key_column='order_item_id')) }}

with

orders as (
    select * from {{ ref('stg_orders') }}
),

order_items as (
    select * from {{ ref('stg_order_items') }}
),

products as (
    select * from {{ ref('stg_products') }}
),

variants as (
    select * from {{ ref('stg_variants') }}
),

priced_items as (
    select
        order_items.order_item_id,
        order_items.order_id,
        order_items.line_number,
        order_items.product_id,
        order_items.variant_id,
        order_items.quantity,
        coalesce(variants.price_cents, products.price_cents) as unit_price_cents,
        orders.updated_at as order_updated_at,
        products.updated_at as product_updated_at,
        variants.updated_at as variant_updated_at,
        -- newest change among the documents this line's values come from
        greatest(
            orders.updated_at,
            coalesce(products.updated_at, orders.updated_at),
            coalesce(variants.updated_at, orders.updated_at)
        ) as source_updated_at,
        (order_items.product_id is not null and products.product_id is null)
            or (order_items.variant_id is not null and variants.variant_id is null)
            as has_dangling_reference
    from order_items
    inner join orders
        on order_items.order_id = orders.order_id
    left join products
        on order_items.product_id = products.product_id
    left join variants
        on order_items.variant_id = variants.variant_id
),

{% if incremental_run() %}
changed_orders as (
    select distinct priced_items.order_id
    from priced_items
    where {{ changed_since_watermark('priced_items.order_updated_at') }}
        or {{ changed_since_watermark('priced_items.product_updated_at') }}
        or {{ changed_since_watermark('priced_items.variant_updated_at') }}
        or priced_items.has_dangling_reference
),

{% endif %}
order_source_versions as (
    select
        priced_items.order_id,
        max(priced_items.source_updated_at) as source_updated_at
    from priced_items
    {% if incremental_run() %}
    where priced_items.order_id in (select changed_orders.order_id from changed_orders)
    {% endif %}
    group by 1
),

weighted_items as (
    select
        priced_items.order_item_id,
        priced_items.order_id,
        priced_items.line_number,
        priced_items.product_id,
        priced_items.variant_id,
        priced_items.quantity,
        priced_items.unit_price_cents,
        coalesce(priced_items.unit_price_cents, 0) * priced_items.quantity as list_total_cents,
        priced_items.order_updated_at,
        priced_items.product_updated_at,
        priced_items.variant_updated_at,
        order_source_versions.source_updated_at
    from priced_items
    inner join order_source_versions
        on priced_items.order_id = order_source_versions.order_id
),

order_weights as (
    select
        weighted_items.order_id,
        sum(weighted_items.list_total_cents) as total_list_cents,
        sum(weighted_items.quantity) as total_quantity
    from weighted_items
    group by 1
),

shares as (
    select
        weighted_items.*,
        orders.amount_cents as order_amount_cents,
        orders.status,
        orders.customer_id,
        cast(orders.created_at as date) as order_date,
        case
            when order_weights.total_list_cents > 0 then weighted_items.list_total_cents
            else weighted_items.quantity
        end as allocation_weight,
        case
            when order_weights.total_list_cents > 0 then order_weights.total_list_cents
            else order_weights.total_quantity
        end as allocation_total
    from weighted_items
    inner join order_weights
        on weighted_items.order_id = order_weights.order_id
    inner join orders
        on weighted_items.order_id = orders.order_id
),

floored as (
    select
        shares.*,
        {{ integer_divide('shares.order_amount_cents * shares.allocation_weight', 'shares.allocation_total') }}
            as floor_cents,
        (shares.order_amount_cents * shares.allocation_weight) % shares.allocation_total
            as remainder_numerator
    from shares
    where shares.allocation_total > 0
),

ranked as (
    select
        floored.*,
        floored.order_amount_cents
            - sum(floored.floor_cents) over (partition by floored.order_id) as cents_left,
        row_number() over (
            partition by floored.order_id
            order by floored.remainder_numerator desc, floored.line_number
        ) as remainder_rank
    from floored
),

final as (
    select
        ranked.order_item_id,
        ranked.order_id,
        ranked.line_number,
        ranked.customer_id,
        ranked.order_date,
        ranked.status,
        {{ is_revenue_bearing('ranked.status') }} as is_revenue_bearing,
        ranked.product_id,
        ranked.variant_id,
        ranked.quantity,
        {{ cents_to_usd('ranked.unit_price_cents') }} as unit_price_usd,
        {{ cents_to_usd('ranked.list_total_cents') }} as list_total_usd,
        {{ cents_to_usd('ranked.floor_cents + case when ranked.remainder_rank <= ranked.cents_left then 1 else 0 end') }}
            as line_total_usd,
        ranked.source_updated_at,
        ranked.order_updated_at,
        ranked.product_updated_at,
        ranked.variant_updated_at
    from ranked
)

select * from final
