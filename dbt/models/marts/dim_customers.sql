-- Registered customers with their order history. total_orders, lifetime_value_usd and the
-- first/last order dates count revenue-bearing orders only (as RFM and cohorts do);
-- orders_placed counts every order. Every customer with at least one order (any status) is in
-- customer_rfm and so has exactly one customer_segment; customers who never ordered have none.
with

customers as (
    select * from {{ ref('stg_customers') }}
),

orders as (
    select * from {{ ref('fact_orders') }}
),

rfm as (
    select * from {{ ref('customer_rfm') }}
),

placed as (
    select
        orders.customer_id,
        count(*) as orders_placed
    from orders
    where orders.customer_id is not null
    group by 1
),

final as (
    select
        customers.customer_id,
        customers.customer_name,
        customers.customer_email,
        customers.created_at as customer_since,
        coalesce(rfm.frequency, 0) as total_orders,
        coalesce(placed.orders_placed, 0) as orders_placed,
        coalesce(rfm.monetary_usd, cast(0 as decimal(18, 2))) as lifetime_value_usd,
        rfm.first_order_date,
        rfm.last_order_date,
        rfm.recency_days,
        rfm.r_score,
        rfm.f_score,
        rfm.m_score,
        rfm.rfm_segment as customer_segment,
        customers.updated_at
    from customers
    left join rfm
        on customers.customer_id = rfm.customer_id
    left join placed
        on customers.customer_id = placed.customer_id
)

select * from final
