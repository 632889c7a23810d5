-- Every product, trashed and draft ones included (orders keep referencing them), flagged.
-- A product sold through variants holds its stock on the variants: inventory is then the sum
-- over its live (not trashed) variants.
with

products as (
    select * from {{ ref('stg_products') }}
),

variants as (
    select * from {{ ref('stg_variants') }}
),

product_categories as (
    select * from {{ ref('stg_product_categories') }}
),

variant_summary as (
    select
        variants.product_id,
        count(*) as variant_count,
        sum(case when not variants.is_deleted then variants.inventory else 0 end) as variant_inventory,
        min(variants.price_cents) as min_variant_price_cents,
        max(variants.price_cents) as max_variant_price_cents
    from variants
    group by 1
),

primary_categories as (
    select
        product_categories.product_id,
        product_categories.category_id
    from product_categories
    where product_categories.category_position = 1
),

stock as (
    select
        products.*,
        case
            when products.has_variants then coalesce(variant_summary.variant_inventory, 0)
            else coalesce(products.inventory, 0)
        end as available_inventory,
        coalesce(variant_summary.variant_count, 0) as variant_count,
        variant_summary.min_variant_price_cents,
        variant_summary.max_variant_price_cents,
        primary_categories.category_id as primary_category_id
    from products
    left join variant_summary
        on products.product_id = variant_summary.product_id
    left join primary_categories
        on products.product_id = primary_categories.product_id
),

final as (
    select
        stock.product_id,
        stock.product_name,
        stock.product_slug,
        stock.description,
        {{ cents_to_usd('coalesce(stock.price_cents, stock.min_variant_price_cents)') }} as price_usd,
        {{ cents_to_usd('stock.min_variant_price_cents') }} as min_variant_price_usd,
        {{ cents_to_usd('stock.max_variant_price_cents') }} as max_variant_price_usd,
        stock.available_inventory as inventory,
        stock.available_inventory > 0 as is_in_stock,
        stock.available_inventory > 0
            and stock.available_inventory <= {{ var('low_stock_threshold') }} as is_low_stock,
        stock.has_variants,
        stock.variant_count,
        stock.primary_category_id,
        stock.publish_status,
        stock.is_draft,
        stock.is_deleted,
        stock.deleted_at,
        stock.created_at,
        stock.updated_at
    from stock
)

select * from final
