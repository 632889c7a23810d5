with

source as (
    select * from {{ source('ecommerce', 'variants') }}
),

renamed as (
    select
        {{ payload_id('id') }} as variant_id,
        {{ payload_id('product') }} as product_id,
        title as variant_name,
        case
            when coalesce(price_in_usd_enabled, true) then cast(price_in_usd as {{ dbt.type_bigint() }})
        end as price_cents,
        cast(inventory as {{ dbt.type_bigint() }}) as inventory,
        coalesce(_status, 'published') as publish_status,
        coalesce(_status, 'published') = 'draft' as is_draft,
        deleted_at is not null as is_deleted,
        {{ utc_timestamp('deleted_at') }} as deleted_at,
        {{ utc_timestamp('created_at') }} as created_at,
        {{ utc_timestamp('updated_at') }} as updated_at,
        {{ utc_timestamp('_loaded_at') }} as loaded_at
    from source
)

select * from renamed
