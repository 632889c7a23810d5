{#-
    RFM of every registered customer with at least one order, whatever its status (guest orders
    have no customer). Frequency and monetary count revenue-bearing orders only:
    - frequency: number of revenue-bearing orders (0 when every order was cancelled/refunded);
      monetary_usd: their total amount (0.00 then);
    - recency_days: days from the customer's last revenue-bearing order date to the as-of date
      (var rfm_as_of_date, default the newest order date in fact_orders); a customer with no
      revenue-bearing order is measured from their last order of any status instead.
    - Scores 1-5 by quintile of rank over that whole population; 5 is best: most recent, most
      frequent, highest spend. Each score orders customers by its own value, then by a second
      one (recency by monetary, frequency by monetary, monetary by frequency); customers equal
      on both share one rank (rank(), the lowest position of the tie) and so one score:
      score = 1 + 5 * (rank - 1) / customers, integer division. Customers with identical
      recency, frequency and monetary values always get identical scores (never split by id).
      Customers without revenue (F = M = 0) take the lowest F and M ranks.
    - fm_score = (f_score + m_score) / 2 rounded half up; the segment comes from the
      seed rfm_segments (r_score x fm_score -> segment, 25 cells).
-#}
with

orders as (
    select * from {{ ref('fact_orders') }}
),

segments as (
    select * from {{ ref('rfm_segments') }}
),

as_of as (
    {% if var('rfm_as_of_date') %}
    select cast('{{ var("rfm_as_of_date") }}' as date) as as_of_date
    {% else %}
    select max(orders.order_date) as as_of_date
    from orders
    {% endif %}
),

customer_orders as (
    select
        orders.customer_id,
        min(case when orders.is_revenue_bearing then orders.order_date end) as first_order_date,
        max(case when orders.is_revenue_bearing then orders.order_date end) as last_order_date,
        max(orders.order_date) as last_any_order_date,
        count(case when orders.is_revenue_bearing then 1 end) as frequency,
        coalesce(
            sum(case when orders.is_revenue_bearing then orders.amount_usd end),
            cast(0 as decimal(18, 2))
        ) as monetary_usd
    from orders
    where orders.customer_id is not null
    group by 1
),

measured as (
    select
        customer_orders.customer_id,
        customer_orders.first_order_date,
        customer_orders.last_order_date,
        customer_orders.frequency,
        customer_orders.monetary_usd,
        -- no revenue-bearing order: recency from the last order of any status
        coalesce(
            customer_orders.last_order_date, customer_orders.last_any_order_date
        ) as recency_order_date,
        as_of.as_of_date
    from customer_orders
    cross join as_of
),

dated as (
    select
        measured.*,
        {{ dbt.datediff('measured.recency_order_date', 'measured.as_of_date', 'day') }} as recency_days
    from measured
),

scored as (
    select
        dated.*,
        {{ tied_quintile('dated.recency_days desc, dated.monetary_usd') }} as r_score,
        {{ tied_quintile('dated.frequency, dated.monetary_usd') }} as f_score,
        {{ tied_quintile('dated.monetary_usd, dated.frequency') }} as m_score
    from dated
),

combined as (
    select
        scored.*,
        {{ integer_divide('scored.f_score + scored.m_score + 1', 2) }} as fm_score
    from scored
),

final as (
    select
        combined.customer_id,
        combined.as_of_date,
        combined.first_order_date,
        combined.last_order_date,
        combined.recency_order_date,
        combined.recency_days,
        combined.frequency,
        combined.monetary_usd,
        combined.r_score,
        combined.f_score,
        combined.m_score,
        combined.fm_score,
        cast(combined.r_score as {{ dbt.type_string() }})
            || cast(combined.f_score as {{ dbt.type_string() }})
            || cast(combined.m_score as {{ dbt.type_string() }}) as rfm_cell,
        segments.segment as rfm_segment
    from combined
    left join segments
        on combined.r_score = segments.r_score
        and combined.fm_score = segments.fm_score
)

select * from final
