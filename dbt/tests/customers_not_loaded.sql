{#- Warns (never fails the build) with the number of customer ids that orders, carts or
    transactions reference but the users table does not hold: late-arriving or hard-deleted
    customers, kept as anonymous rows in dim_customers. The count is in run_results.json
    (`failures`) and in the flow's dbt summary. -#}
{{ config(severity='warn') }}

select
    dim_customers.customer_id
from {{ ref('dim_customers') }} as dim_customers
where dim_customers.is_unknown_customer
