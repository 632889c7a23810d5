with

source as (
    select * from {{ source('ecommerce', 'transactions') }}
),

renamed as (
    select
        {{ payload_id('id') }} as transaction_id,
        {{ payload_id('"order"') }} as order_id,
        {{ payload_id('cart') }} as cart_id,
        {{ payload_id('customer') }} as customer_id,
        lower(customer_email) as customer_email,
        payment_method,
        status,
        cast(amount as {{ dbt.type_bigint() }}) as amount_cents,
        upper(currency) as currency,
        {{ json_text('card', 'brand') }} as card_brand,
        {{ json_text('card', 'last4') }} as card_last4,
        {{ json_text('billing_address', 'country') }} as billing_country,
        {{ utc_timestamp('created_at') }} as created_at,
        {{ utc_timestamp('updated_at') }} as updated_at,
        {{ utc_timestamp('_loaded_at') }} as loaded_at
    from source
)

select * from renamed
