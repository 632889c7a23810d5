-- Many-to-many products <-> categories, in the product's own category order. Links to
-- categories that no longer exist are dropped (Payload keeps a dangling id at depth 0).
with

product_categories as (
    select * from {{ ref('stg_product_categories') }}
),

categories as (
    select * from {{ ref('stg_categories') }}
),

products as (
    select * from {{ ref('stg_products') }}
),

final as (
    select
        product_categories.product_id,
        product_categories.category_id,
        product_categories.category_position,
        product_categories.category_position = 1 as is_primary_category
    from product_categories
    inner join categories
        on product_categories.category_id = categories.category_id
    inner join products
        on product_categories.product_id = products.product_id
)

select * from final
