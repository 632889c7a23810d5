-- A variant's chosen options (its `options` JSON array of variantOption ids), e.g. Size=XL.
with

variants as (
    select * from {{ source('ecommerce', 'variants') }}
),

options as (
    select *
    from {{ json_array_elements('variants', 'id', 'options', none, 'bigint') }} as exploded
),

renamed as (
    select
        cast(parent_id as {{ dbt.type_bigint() }}) as variant_id,
        cast(value as {{ dbt.type_bigint() }}) as variant_option_id,
        cast(position as {{ dbt.type_int() }}) as option_position
    from options
    where value is not null
)

select * from renamed
