with

source as (
    select * from {{ source('ecommerce', 'carts') }}
),

renamed as (
    select
        {{ payload_id('id') }} as cart_id,
        {{ payload_id('customer') }} as customer_id,
        -- Payload computes a cart's status when it is read (active / purchased / abandoned):
        -- this is the value at load time, stale later; fact_carts derives the current one.
        status as loaded_status,
        cast(subtotal as {{ dbt.type_bigint() }}) as subtotal_cents,
        upper(currency) as currency,
        {{ utc_timestamp('purchased_at') }} as purchased_at,
        {{ utc_timestamp('created_at') }} as created_at,
        {{ utc_timestamp('updated_at') }} as updated_at,
        {{ utc_timestamp('_loaded_at') }} as loaded_at
    from source
)

select * from renamed
