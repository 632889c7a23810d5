with

source as (
    select * from {{ source('ecommerce', 'categories') }}
),

renamed as (
    select
        cast(id as {{ dbt.type_bigint() }}) as category_id,
        title as category_name,
        slug as category_slug,
        {{ utc_timestamp('created_at') }} as created_at,
        {{ utc_timestamp('updated_at') }} as updated_at
    from source
)

select * from renamed
