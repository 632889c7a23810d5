with

carts as (
    select * from {{ source('ecommerce', 'carts') }}
),

items as (
    select *
    from {{ json_array_elements(
        'carts', 'id', 'items',
        [
            ('id', 'varchar'),
            ('product', payload_id_json_type()),
            ('variant', payload_id_json_type()),
            ('quantity', 'bigint'),
        ]
    ) }} as exploded
),

renamed as (
    select
        "id" as cart_item_id,
        {{ payload_id('parent_id') }} as cart_id,
        cast(position as {{ dbt.type_int() }}) as line_number,
        "product" as product_id,
        "variant" as variant_id,
        "quantity" as quantity
    from items
)

select * from renamed
