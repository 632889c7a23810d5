with

source as (
    select * from {{ source('ecommerce', 'variantoptions') }}
),

renamed as (
    select
        {{ payload_id('id') }} as variant_option_id,
        {{ payload_id('variant_type') }} as variant_type_id,
        label as option_label,
        value as option_value,
        _variant_options_options_order as sort_key,
        deleted_at is not null as is_deleted,
        {{ utc_timestamp('created_at') }} as created_at,
        {{ utc_timestamp('updated_at') }} as updated_at
    from source
)

select * from renamed
