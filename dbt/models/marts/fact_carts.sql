{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='cart_id',
        on_schema_change='append_new_columns',
        properties=month_partitioned('cart_date'),
        post_hook="{{ delete_missing_rows('cart_id', ref('stg_carts')) }}"
    )
}}

with

carts as (
    select * from {{ ref('stg_carts') }}
    {% if incremental_run() %}
    where updated_at >= (select max(this_table.updated_at) from {{ this }} as this_table)
    {% endif %}
),

cart_items as (
    select * from {{ ref('stg_cart_items') }}
),

cart_item_counts as (
    select
        cart_items.cart_id,
        count(*) as line_count,
        sum(cart_items.quantity) as item_count
    from cart_items
    inner join carts
        on cart_items.cart_id = carts.cart_id
    group by 1
),

final as (
    select
        carts.cart_id,
        carts.customer_id,
        carts.status,
        {{ cents_to_usd('carts.subtotal_cents') }} as subtotal_usd,
        carts.currency,
        coalesce(cart_item_counts.item_count, 0) as item_count,
        coalesce(cart_item_counts.line_count, 0) as line_count,
        carts.purchased_at is not null as is_purchased,
        cast(carts.created_at as date) as cart_date,
        carts.created_at,
        carts.updated_at,
        carts.purchased_at
    from carts
    left join cart_item_counts
        on carts.cart_id = cart_item_counts.cart_id
)

select * from final
