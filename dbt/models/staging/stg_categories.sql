with

source as (
    select * from {{ source('ecommerce', 'categories') }}
),

renamed as (
    select
        {{ payload_id('id') }} as category_id,
        title as category_name,
        slug as category_slug,
        {{ utc_timestamp('created_at') }} as created_at,
        {{ utc_timestamp('updated_at') }} as updated_at
    from source
)

select * from renamed
