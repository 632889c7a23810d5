with

categories as (
    select * from {{ ref('stg_categories') }}
),

product_categories as (
    select * from {{ ref('stg_product_categories') }}
),

products as (
    select * from {{ ref('stg_products') }}
),

live_product_counts as (
    select
        product_categories.category_id,
        count(distinct product_categories.product_id) as product_count
    from product_categories
    inner join products
        on product_categories.product_id = products.product_id
    where not products.is_deleted
        and not products.is_draft
    group by 1
),

final as (
    select
        categories.category_id,
        categories.category_name,
        categories.category_slug,
        coalesce(live_product_counts.product_count, 0) as product_count,
        categories.created_at,
        categories.updated_at
    from categories
    left join live_product_counts
        on categories.category_id = live_product_counts.category_id
)

select * from final
