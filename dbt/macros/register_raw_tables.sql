{#-
    Local target: expose each raw Iceberg table as a DuckDB view `ecommerce.<table>` over
    iceberg_scan(<current metadata.json>), so sources are plain relations as on Trino, and the
    DuckDB file keeps the raw layer queryable. The locations come from env vars
    DBT_RAW_<TABLE>_LOCATION set by flows.transform.dbt_project.dbt_environment(); when one is
    unset, the existing view (from the previous run) is left as it is.
    Trino: the raw tables already are Iceberg tables in the catalog; nothing to do.
-#}
{% macro register_raw_tables() -%}
    {{ return(adapter.dispatch('register_raw_tables')()) }}
{%- endmacro %}

{% macro default__register_raw_tables() -%}
    {{ return('') }}
{%- endmacro %}

{% macro duckdb__register_raw_tables() -%}
    {%- if execute -%}
        {%- set schema_name = env_var('ICEBERG_NAMESPACE', 'ecommerce') -%}
        {%- do run_query('create schema if not exists ' ~ schema_name) -%}
        {%- for source_node in graph.sources.values()
            if source_node.source_name == 'ecommerce' -%}
            {%- set location = env_var('DBT_RAW_' ~ source_node.name | upper ~ '_LOCATION', '') -%}
            {%- if location -%}
                {%- do run_query(
                    'create or replace view ' ~ schema_name ~ '.' ~ source_node.name
                    ~ ' as select * from ' ~ location
                ) -%}
            {%- endif -%}
        {%- endfor -%}
    {%- endif -%}
    {{ return('') }}
{%- endmacro %}
