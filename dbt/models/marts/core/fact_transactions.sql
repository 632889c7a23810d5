{{ config(**incremental_fact_config('transaction_id', 'transaction_date', 'stg_transactions')) }}

with

transactions as (
    select * from {{ ref('stg_transactions') }}
    where {{ changed_since_watermark('updated_at') }}
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
