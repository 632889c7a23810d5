-- Each customer's acquisition cohort: the month of their first revenue-bearing order.
with

revenue_orders as (
    select * from {{ ref('int_revenue_orders') }}
),

ranked as (
    select
        revenue_orders.*,
        row_number() over (
            partition by revenue_orders.customer_id
            order by revenue_orders.created_at, revenue_orders.order_id
        ) as order_rank
    from revenue_orders
),

final as (
    select
        ranked.customer_id,
        ranked.order_month as cohort_month,
        ranked.order_id as first_order_id,
        ranked.order_date as first_order_date,
        ranked.amount_usd as first_order_amount_usd
    from ranked
    where ranked.order_rank = 1
)

select * from final
