-- One row per entry of an order's `items` JSON array. Payload stores no price on a line: only
-- the product, the optional variant and the quantity (the price is derived in fact_order_items).
with

orders as (
    select * from {{ source('ecommerce', 'orders') }}
),

items as (
    select *
    from {{ json_array_elements(
        'orders', 'id', 'items',
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
        "id" as order_item_id,
        {{ payload_id('parent_id') }} as order_id,
        cast(position as {{ dbt.type_int() }}) as line_number,
        "product" as product_id,
        "variant" as variant_id,
        "quantity" as quantity
    from items
)

select * from renamed
