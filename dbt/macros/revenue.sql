{#- The single definition of a revenue-bearing order (var `revenue_order_statuses`, default
    processing + completed; refunded and cancelled orders carry no revenue). -#}
{% macro is_revenue_bearing(status_column) -%}
    ({{ status_column }} in (
        {%- for status in var('revenue_order_statuses') -%}
            '{{ status }}'{{ ", " if not loop.last }}
        {%- endfor -%}
    ))
{%- endmacro %}
