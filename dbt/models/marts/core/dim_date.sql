-- One row per calendar day, whole years covering every order, transaction, cart and customer
-- sign-up date, so every fact date joins.
with

orders as (
    select * from {{ ref('stg_orders') }}
),

transactions as (
    select * from {{ ref('stg_transactions') }}
),

carts as (
    select * from {{ ref('stg_carts') }}
),

customers as (
    select * from {{ ref('stg_customers') }}
),

event_dates as (
    select cast(created_at as date) as event_date from orders
    union all
    select cast(created_at as date) from transactions
    union all
    select cast(created_at as date) from carts
    union all
    select cast(created_at as date) from customers
),

bounds as (
    select
        cast({{ dbt.date_trunc('year', 'min(event_date)') }} as date) as first_day,
        cast(
            {{ dbt.dateadd('day', -1, dbt.dateadd('year', 1, dbt.date_trunc('year', 'max(event_date)'))) }}
            as date
        ) as last_day
    from event_dates
),

days as (
    select *
    from {{ date_series('bounds', 'first_day', 'last_day') }} as series
),

final as (
    select
        days.date_day,
        cast(extract(year from days.date_day) as {{ dbt.type_int() }}) as year,
        cast(extract(quarter from days.date_day) as {{ dbt.type_int() }}) as quarter,
        cast(extract(month from days.date_day) as {{ dbt.type_int() }}) as month,
        {{ month_name('days.date_day') }} as month_name,
        cast(extract(day from days.date_day) as {{ dbt.type_int() }}) as day_of_month,
        cast({{ iso_day_of_week('days.date_day') }} as {{ dbt.type_int() }}) as day_of_week,
        {{ day_name('days.date_day') }} as day_name,
        cast({{ iso_week('days.date_day') }} as {{ dbt.type_int() }}) as iso_week,
        {{ iso_day_of_week('days.date_day') }} in (6, 7) as is_weekend,
        cast({{ dbt.date_trunc('month', 'days.date_day') }} as date) as month_start_date,
        cast({{ dbt.date_trunc('quarter', 'days.date_day') }} as date) as quarter_start_date
    from days
)

select * from final
