{#- Payload stores money as integer cents; marts expose exact USD decimals. The cents are cast
    to a decimal of scale 2 *before* dividing: Trino gives a decimal quotient the larger scale of
    its operands, so `cents / 100.0` (scale 1) would round every amount to 10 cents. -#}
{% macro cents_to_usd(column_name) -%}
    cast(cast(({{ column_name }}) as decimal(18, 2)) / 100 as decimal(18, 2))
{%- endmacro %}
