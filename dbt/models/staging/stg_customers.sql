-- Users holding the `customer` role (admins are not customers).
with

source as (
    select * from {{ source('ecommerce', 'users') }}
),

customers as (
    select * from source
    where {{ json_array_contains('roles', 'customer') }}
),

renamed as (
    select
        {{ payload_id('id') }} as customer_id,
        name as customer_name,
        lower(email) as customer_email,
        {{ utc_timestamp('created_at') }} as created_at,
        {{ utc_timestamp('updated_at') }} as updated_at
    from customers
)

select * from renamed
