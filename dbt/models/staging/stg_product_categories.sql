with

products as (
    select * from {{ source('ecommerce', 'products') }}
),

categories as (
    select *
    from {{ json_array_elements('products', 'id', 'categories', none, payload_id_json_type()) }} as exploded
),

renamed as (
    select
        {{ payload_id('parent_id') }} as product_id,
        {{ payload_id('value') }} as category_id,
        cast(position as {{ dbt.type_int() }}) as category_position
    from categories
    where value is not null
)

select * from renamed
