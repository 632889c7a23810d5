-- A variant's chosen options (its `options` JSON array of variantOption ids), e.g. Size=XL.
with

variants as (
    select * from {{ source('ecommerce', 'variants') }}
),

options as (
    select *
    from {{ json_array_elements('variants', 'id', 'options', none, payload_id_json_type()) }} as exploded
),

renamed as (
    select
        {{ payload_id('parent_id') }} as variant_id,
        {{ payload_id('value') }} as variant_option_id,
        cast(position as {{ dbt.type_int() }}) as option_position
    from options
    where value is not null
)

select * from renamed
