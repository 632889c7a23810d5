{#-
    Payload document ids: integers (SQLite / PostgreSQL serial) or strings (MongoDB ObjectIds,
    PostgreSQL UUIDs). Every id and relationship column of the staging models goes through
    `payload_id()`, so the keys and joins of every model have the raw tables' id type.

    The type comes from the var `payload_id_type` (`int` or `string`; `objectid` / `uuid` are
    read as `string`), by default from DBT_PAYLOAD_ID_TYPE, which the flow sets from the raw
    tables' `id` column (flows/transform/dbt_project.py); unset: `int`.
-#}

{% macro payload_id_is_string() -%}
    {%- set chosen = var('payload_id_type', env_var('DBT_PAYLOAD_ID_TYPE', 'int')) | string | lower -%}
    {%- if chosen not in ('int', 'string', 'objectid', 'uuid') -%}
        {{ exceptions.raise_compiler_error(
            "payload_id_type must be int or string (objectid / uuid), got '" ~ chosen ~ "'"
        ) }}
    {%- endif -%}
    {{ return(chosen != 'int') }}
{%- endmacro %}

{#- The SQL type of an id column. -#}
{% macro payload_id_type() -%}
    {{ return(dbt.type_string() if payload_id_is_string() else dbt.type_bigint()) }}
{%- endmacro %}

{#- An id (or relationship id) column cast to the id type. -#}
{% macro payload_id(column_name) -%}
    cast({{ column_name }} as {{ payload_id_type() }})
{%- endmacro %}

{#- The id type inside JSON arrays (`json_array_elements` field types): ids as Payload sent them. -#}
{% macro payload_id_json_type() -%}
    {{ return('varchar' if payload_id_is_string() else 'bigint') }}
{%- endmacro %}
