{#-
    Local target: expose each raw Iceberg table as a DuckDB view `ecommerce.<table>` over
    iceberg_scan(<current metadata.json>), so sources are plain relations as on Trino, and the
    DuckDB file keeps the raw layer queryable. The locations come from env vars
    DBT_RAW_<TABLE>_LOCATION set by flows.transform.dbt_project.dbt_environment(); when one is
    unset, or names the location the view already reads, the existing view is left as it is.
    Trino: the raw tables already are Iceberg tables in the catalog; nothing to do.
-#}
{% macro register_raw_tables() -%}
    {{ return(adapter.dispatch('register_raw_tables')()) }}
{%- endmacro %}

{% macro default__register_raw_tables() -%}
    {{ return('') }}
{%- endmacro %}

{#- Each view keeps the location it reads in its comment, so a view whose table has no new
    snapshot is left alone (binding an iceberg_scan view reads the table's metadata), and the
    remaining statements go to DuckDB in one batch. -#}
{% macro duckdb__register_raw_tables() -%}
    {%- if execute -%}
        {%- set schema_name = env_var('ICEBERG_NAMESPACE', 'ecommerce') -%}
        {%- set registered = {} -%}
        {%- set existing = run_query(
            "select view_name, comment from duckdb_views() "
            ~ "where database_name = current_database() and schema_name = '" ~ schema_name ~ "'"
        ) -%}
        {%- for row in existing.rows -%}
            {%- do registered.update({row[0]: row[1]}) -%}
        {%- endfor -%}
        {%- set statements = [] -%}
        {%- for source_node in graph.sources.values()
            if source_node.source_name == 'ecommerce' -%}
            {%- set location = env_var('DBT_RAW_' ~ source_node.name | upper ~ '_LOCATION', '') -%}
            {%- if location and registered.get(source_node.name) != location -%}
                {%- set view_name = schema_name ~ '.' ~ source_node.name -%}
                {%- do statements.append(
                    'create or replace view ' ~ view_name ~ ' as select * from ' ~ location
                ) -%}
                {%- do statements.append(
                    'comment on view ' ~ view_name ~ " is '" ~ location | replace("'", "''") ~ "'"
                ) -%}
            {%- endif -%}
        {%- endfor -%}
        {%- if statements -%}
            {%- do run_query(
                'create schema if not exists ' ~ schema_name ~ ';\n' ~ statements | join(';\n')
            ) -%}
        {%- endif -%}
    {%- endif -%}
    {{ return('') }}
{%- endmacro %}
