with

source as (
    select * from {{ source('ecommerce', 'varianttypes') }}
),

renamed as (
    select
        {{ payload_id('id') }} as variant_type_id,
        label as variant_type_label,
        name as variant_type_name,
        deleted_at is not null as is_deleted,
        {{ utc_timestamp('created_at') }} as created_at,
        {{ utc_timestamp('updated_at') }} as updated_at
    from source
)

select * from renamed
