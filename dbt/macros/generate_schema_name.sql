{#- Custom schemas are used as-is (ecommerce_staging, ecommerce_marts), not prefixed with the
    target schema: these are the names production users query. -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema | trim }}
    {%- else -%}
        {{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}
