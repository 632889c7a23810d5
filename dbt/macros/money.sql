{#- Payload stores money as integer cents; marts expose exact USD decimals. -#}
{% macro cents_to_usd(column_name) -%}
    cast(({{ column_name }}) / 100.0 as decimal(18, 2))
{%- endmacro %}
