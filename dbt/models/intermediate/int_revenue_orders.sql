-- Revenue-bearing orders of registered customers (macro is_revenue_bearing; guest orders
-- have no customer): the orders that define cohorts and their retention.
with

orders as (
    select * from {{ ref('fact_orders') }}
),

revenue_orders as (
    select
        orders.order_id,
        orders.customer_id,
        orders.amount_usd,
        orders.order_date,
        orders.order_month,
        orders.created_at
    from orders
    where orders.is_revenue_bearing
        and orders.customer_id is not null
)

select * from revenue_orders
