{#-
    Acquisition cohort x months since first order, dense: every month from the cohort month to
    the newest order month is present, with zero activity where nobody ordered.
    active_customers = cohort members with a revenue-bearing order in that month (month 0 is
    everyone: retention 100%); revenue counts those orders; the per-customer figures divide by
    the cohort size.
-#}
with

cohorts as (
    select * from {{ ref('customer_cohorts') }}
),

orders as (
    select * from {{ ref('fact_orders') }}
),

revenue_orders as (
    select * from {{ ref('int_revenue_orders') }}
),

cohort_sizes as (
    select
        cohorts.cohort_month,
        count(*) as cohort_size
    from cohorts
    group by 1
),

calendar as (
    select * from {{ ref('dim_date') }}
),

newest_order_month as (
    select max(orders.order_month) as newest_month from orders
),

months as (
    select distinct calendar.month_start_date as activity_month
    from calendar
    cross join newest_order_month
    where calendar.month_start_date <= newest_order_month.newest_month
),

month_offsets as (
    select
        cohort_sizes.cohort_month,
        cohort_sizes.cohort_size,
        months.activity_month
    from cohort_sizes
    inner join months
        on months.activity_month >= cohort_sizes.cohort_month
),

activity as (
    select
        cohorts.cohort_month,
        revenue_orders.order_month as activity_month,
        count(distinct revenue_orders.customer_id) as active_customers,
        sum(revenue_orders.amount_usd) as revenue_usd
    from revenue_orders
    inner join cohorts
        on revenue_orders.customer_id = cohorts.customer_id
    group by 1, 2
),

grid as (
    select
        month_offsets.cohort_month,
        month_offsets.activity_month,
        cast({{ dbt.datediff('month_offsets.cohort_month', 'month_offsets.activity_month', 'month') }} as {{ dbt.type_int() }})
            as months_since_first_order,
        month_offsets.cohort_size,
        coalesce(activity.active_customers, 0) as active_customers,
        coalesce(activity.revenue_usd, cast(0 as decimal(18, 2))) as revenue_usd
    from month_offsets
    left join activity
        on month_offsets.cohort_month = activity.cohort_month
        and month_offsets.activity_month = activity.activity_month
),

final as (
    select
        grid.cohort_month,
        grid.months_since_first_order,
        grid.activity_month,
        grid.cohort_size,
        grid.active_customers,
        cast(grid.active_customers as double) / grid.cohort_size as retention_rate,
        grid.revenue_usd,
        sum(grid.revenue_usd) over (
            partition by grid.cohort_month
            order by grid.months_since_first_order
            rows between unbounded preceding and current row
        ) as cumulative_revenue_usd,
        cast(grid.revenue_usd as double) / grid.cohort_size as revenue_per_customer_usd,
        cast(
            sum(grid.revenue_usd) over (
                partition by grid.cohort_month
                order by grid.months_since_first_order
                rows between unbounded preceding and current row
            ) as double
        ) / grid.cohort_size as cumulative_revenue_per_customer_usd
    from grid
)

select * from final
