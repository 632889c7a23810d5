{#- The single definition of a revenue-bearing order (var `revenue_order_statuses`, default
    processing + completed; refunded and cancelled orders carry no revenue). -#}
{% macro is_revenue_bearing(status_column) -%}
    ({{ status_column }} in (
        {%- for status in var('revenue_order_statuses') -%}
            '{{ status }}'{{ ", " if not loop.last }}
        {%- endfor -%}
    ))
{%- endmacro %}


{#- Score 1-5 by quintile of rank(): rows equal on `order_by` share the lowest rank of their
    tie and therefore one score (ntile() would split a tie across two scores by an arbitrary
    order). score = 1 + 5 * (rank - 1) / row count, integer division. -#}
{% macro tied_quintile(order_by) -%}
    (1 + {{ integer_divide('5 * (rank() over (order by ' ~ order_by ~ ') - 1)', 'count(*) over ()') }})
{%- endmacro %}
