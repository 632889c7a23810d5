with

source as (
    select * from {{ source('ecommerce', 'orders') }}
),

renamed as (
    select
        {{ payload_id('id') }} as order_id,
        {{ payload_id('customer') }} as customer_id,
        lower(customer_email) as customer_email,
        status,
        cast(amount as {{ dbt.type_bigint() }}) as amount_cents,
        upper(currency) as currency,
        {{ json_text('shipping_address', 'city') }} as shipping_city,
        {{ json_text('shipping_address', 'state') }} as shipping_state,
        {{ json_text('shipping_address', 'postalCode') }} as shipping_postal_code,
        {{ json_text('shipping_address', 'country') }} as shipping_country,
        items as items_json,
        {{ utc_timestamp('created_at') }} as created_at,
        {{ utc_timestamp('updated_at') }} as updated_at,
        {{ utc_timestamp('_loaded_at') }} as loaded_at
    from source
)

select * from renamed
