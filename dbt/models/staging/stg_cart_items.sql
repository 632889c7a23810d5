with

carts as (
    select * from {{ source('ecommerce', 'carts') }}
),

items as (
    select *
    from {{ json_array_elements(
        'carts', 'id', 'items',
        [('id', 'varchar'), ('product', 'bigint'), ('variant', 'bigint'), ('quantity', 'bigint')]
    ) }} as exploded
),

renamed as (
    select
        "id" as cart_item_id,
        cast(parent_id as {{ dbt.type_bigint() }}) as cart_id,
        cast(position as {{ dbt.type_int() }}) as line_number,
        "product" as product_id,
        "variant" as variant_id,
        "quantity" as quantity
    from items
)

select * from renamed
