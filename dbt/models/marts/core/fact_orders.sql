{{ config(**incremental_fact_config('order_id', 'order_date', 'stg_orders')) }}

with

orders as (
    select * from {{ ref('stg_orders') }}
    where {{ changed_since_watermark('updated_at') }}
),

order_items as (
    select * from {{ ref('stg_order_items') }}
),

order_item_counts as (
    select
        order_items.order_id,
        count(*) as line_count,
        sum(order_items.quantity) as item_count
    from order_items
    inner join orders
        on order_items.order_id = orders.order_id
    group by 1
),

final as (
    select
        orders.order_id,
        orders.customer_id,
        orders.customer_email,
        {{ cents_to_usd('orders.amount_cents') }} as amount_usd,
        orders.amount_cents,
        orders.currency,
        orders.status,
        {{ is_revenue_bearing('orders.status') }} as is_revenue_bearing,
        cast(orders.created_at as date) as order_date,
        cast({{ dbt.date_trunc('month', 'orders.created_at') }} as date) as order_month,
        orders.created_at,
        orders.updated_at,
        coalesce(order_item_counts.item_count, 0) as item_count,
        coalesce(order_item_counts.line_count, 0) as line_count,
        orders.shipping_country,
        orders.shipping_state,
        orders.shipping_city
    from orders
    left join order_item_counts
        on orders.order_id = order_item_counts.order_id
)

select * from final
