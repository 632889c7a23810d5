{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='transaction_id',
        on_schema_change='append_new_columns',
        properties=month_partitioned('transaction_date'),
        post_hook="{{ delete_missing_rows('transaction_id', ref('stg_transactions')) }}"
    )
}}

with

transactions as (
    select * from {{ ref('stg_transactions') }}
    {% if incremental_run() %}
    where updated_at >= (select max(this_table.updated_at) from {{ this }} as this_table)
    {% endif %}
),

final as (
    select
        transactions.transaction_id,
        transactions.order_id,
        transactions.cart_id,
        transactions.customer_id,
        transactions.customer_email,
        {{ cents_to_usd('transactions.amount_cents') }} as amount_usd,
        transactions.currency,
        transactions.payment_method,
        transactions.card_brand,
        transactions.status,
        cast(transactions.created_at as date) as transaction_date,
        transactions.created_at,
        transactions.updated_at
    from transactions
)

select * from final
