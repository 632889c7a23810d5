{#-
    RFM over revenue-bearing orders of registered customers (guest orders have no customer).
    - recency_days: days from the customer's last revenue-bearing order date to the as-of date
      (var rfm_as_of_date, default the newest order date in fact_orders);
    - frequency: number of revenue-bearing orders; monetary_usd: their total amount.
    - Scores 1-5 by quintile (ntile(5)); 5 is best: most recent, most frequent, highest spend.
      Ties are broken deterministically: recency by monetary then customer_id, frequency by
      monetary then customer_id, monetary by frequency then customer_id (higher customer_id
      scores higher within an exact tie).
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
        min(orders.order_date) as first_order_date,
        max(orders.order_date) as last_order_date,
        count(*) as frequency,
        sum(orders.amount_usd) as monetary_usd
    from orders
    where orders.is_revenue_bearing
        and orders.customer_id is not null
    group by 1
),

measured as (
    select
        customer_orders.*,
        as_of.as_of_date,
        {{ dbt.datediff('customer_orders.last_order_date', 'as_of.as_of_date', 'day') }} as recency_days
    from customer_orders
    cross join as_of
),

scored as (
    select
        measured.*,
        ntile(5) over (
            order by measured.recency_days desc, measured.monetary_usd, measured.customer_id
        ) as r_score,
        ntile(5) over (
            order by measured.frequency, measured.monetary_usd, measured.customer_id
        ) as f_score,
        ntile(5) over (
            order by measured.monetary_usd, measured.frequency, measured.customer_id
        ) as m_score
    from measured
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
