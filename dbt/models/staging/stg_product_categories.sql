with

products as (
    select * from {{ source('ecommerce', 'products') }}
),

categories as (
    select *
    from {{ json_array_elements('products', 'id', 'categories', none, 'bigint') }} as exploded
),

renamed as (
    select
        cast(parent_id as {{ dbt.type_bigint() }}) as product_id,
        cast(value as {{ dbt.type_bigint() }}) as category_id,
        cast(position as {{ dbt.type_int() }}) as category_position
    from categories
    where value is not null
)

select * from renamed
