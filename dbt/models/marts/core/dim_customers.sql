{#-
    Registered customers with their order history, one row per customer id any fact references.
    - customer_since: the customer's sign-up instant (the Payload user's createdAt, UTC); null
      for an unknown customer.
    - Unknown customers (is_unknown_customer): an order, cart or transaction references a user
      id that is not (yet) loaded: a late-arriving customer, or one hard-deleted (e.g. for
      privacy). They get an anonymous row (no name, no e-mail) so every fact still joins to a
      customer and the run publishes; the warn-severity test customers_not_loaded counts them
      in the run's artifacts. When the user arrives, the next build fills the row in.
    - total_orders (the order count), lifetime_value_usd and first/last_order_date count
      revenue-bearing orders only (as RFM and cohorts do); orders_placed counts every order.
    - customer_lifetime_days: days from the first revenue-bearing order date (else the sign-up
      date) to the build date (macro build_date, var build_at); null when neither is known.
    Every customer with at least one order (any status) is in customer_rfm and so has exactly
    one customer_segment; customers who never ordered have none.
-#}
with

customers as (
    select * from {{ ref('stg_customers') }}
),

orders as (
    select * from {{ ref('fact_orders') }}
),

carts as (
    select * from {{ ref('fact_carts') }}
),

transactions as (
    select * from {{ ref('fact_transactions') }}
),

rfm as (
    select * from {{ ref('customer_rfm') }}
),

referenced_customer_ids as (
    select orders.customer_id from orders
    union
    select carts.customer_id from carts
    union
    select transactions.customer_id from transactions
),

unknown_customers as (
    select
        referenced_customer_ids.customer_id,
        cast(null as {{ dbt.type_string() }}) as customer_name,
        cast(null as {{ dbt.type_string() }}) as customer_email,
        cast(null as {{ dbt.type_timestamp() }}) as created_at,
        cast(null as {{ dbt.type_timestamp() }}) as updated_at,
        true as is_unknown_customer
    from referenced_customer_ids
    left join customers
        on referenced_customer_ids.customer_id = customers.customer_id
    where referenced_customer_ids.customer_id is not null
        and customers.customer_id is null
),

all_customers as (
    select
        customers.customer_id,
        customers.customer_name,
        customers.customer_email,
        customers.created_at,
        customers.updated_at,
        false as is_unknown_customer
    from customers
    union all
    select * from unknown_customers
),

placed as (
    select
        orders.customer_id,
        count(*) as orders_placed
    from orders
    where orders.customer_id is not null
    group by 1
),

joined as (
    select
        all_customers.*,
        rfm.frequency,
        rfm.monetary_usd,
        rfm.first_order_date,
        rfm.last_order_date,
        rfm.recency_days,
        rfm.r_score,
        rfm.f_score,
        rfm.m_score,
        rfm.rfm_segment,
        placed.orders_placed,
        coalesce(rfm.first_order_date, cast(all_customers.created_at as date)) as lifetime_start_date,
        {{ build_date() }} as build_date
    from all_customers
    left join rfm
        on all_customers.customer_id = rfm.customer_id
    left join placed
        on all_customers.customer_id = placed.customer_id
),

final as (
    select
        joined.customer_id,
        joined.customer_name,
        joined.customer_email,
        joined.is_unknown_customer,
        joined.created_at as customer_since,
        coalesce(joined.frequency, 0) as total_orders,
        coalesce(joined.orders_placed, 0) as orders_placed,
        coalesce(joined.monetary_usd, cast(0 as decimal(18, 2))) as lifetime_value_usd,
        joined.first_order_date,
        joined.last_order_date,
        {{ days_between('joined.lifetime_start_date', 'joined.build_date') }}
            as customer_lifetime_days,
        joined.recency_days,
        joined.r_score,
        joined.f_score,
        joined.m_score,
        joined.rfm_segment as customer_segment,
        joined.updated_at
    from joined
)

select * from final
