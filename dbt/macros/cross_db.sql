{#-
    Engine-specific SQL, written once per engine and dispatched by adapter type, so the models
    themselves never branch on the engine. Each macro has a duckdb__ (local target), trino__
    (production) and default__ implementation.
-#}

{#- A timestamptz as a UTC timestamp without time zone (staging normalises every instant). -#}
{% macro utc_timestamp(column_name) -%}
    {{ return(adapter.dispatch('utc_timestamp')(column_name)) }}
{%- endmacro %}

{% macro default__utc_timestamp(column_name) -%}
    cast({{ column_name }} as {{ dbt.type_timestamp() }})
{%- endmacro %}

{% macro duckdb__utc_timestamp(column_name) -%}
    timezone('UTC', {{ column_name }})
{%- endmacro %}

{% macro trino__utc_timestamp(column_name) -%}
    cast({{ column_name }} at time zone 'UTC' as timestamp(6))
{%- endmacro %}


{#- Integer division of non-negative integers (DuckDB's `/` always returns a double). -#}
{% macro integer_divide(numerator, denominator) -%}
    {{ return(adapter.dispatch('integer_divide')(numerator, denominator)) }}
{%- endmacro %}

{% macro default__integer_divide(numerator, denominator) -%}
    cast(floor(({{ numerator }}) / ({{ denominator }})) as {{ dbt.type_bigint() }})
{%- endmacro %}

{% macro duckdb__integer_divide(numerator, denominator) -%}
    (({{ numerator }}) // ({{ denominator }}))
{%- endmacro %}

{% macro trino__integer_divide(numerator, denominator) -%}
    (({{ numerator }}) / ({{ denominator }}))
{%- endmacro %}


{#- A scalar from a JSON object string, as text (NULL when absent or JSON null). -#}
{% macro json_text(column_name, key) -%}
    {{ return(adapter.dispatch('json_text')(column_name, key)) }}
{%- endmacro %}

{% macro default__json_text(column_name, key) -%}
    json_extract_scalar({{ column_name }}, '$.{{ key }}')
{%- endmacro %}

{% macro duckdb__json_text(column_name, key) -%}
    json_extract_string({{ column_name }}, '$.{{ key }}')
{%- endmacro %}


{#- True when a JSON array of strings contains the value. -#}
{% macro json_array_contains(column_name, value) -%}
    {{ return(adapter.dispatch('json_array_contains')(column_name, value)) }}
{%- endmacro %}

{% macro default__json_array_contains(column_name, value) -%}
    contains(cast(json_parse({{ column_name }}) as array(varchar)), '{{ value }}')
{%- endmacro %}

{% macro duckdb__json_array_contains(column_name, value) -%}
    coalesce(list_contains(from_json({{ column_name }}, '["varchar"]'), '{{ value }}'), false)
{%- endmacro %}

{% macro trino__json_array_contains(column_name, value) -%}
    coalesce(contains(cast(json_parse({{ column_name }}) as array(varchar)), '{{ value }}'), false)
{%- endmacro %}


{#-
    Explode a JSON array column into one row per element, as a subquery with the columns
    `parent_id`, `position` (1-based, array order) and either the requested object fields
    (fields = [('id', 'varchar'), ('quantity', 'bigint')]) or `value` (fields = none, a scalar
    array of `element_type`). NULL and empty arrays give no rows.
-#}
{% macro json_array_elements(relation, id_column, json_column, fields=none, element_type='bigint') -%}
    {{ return(adapter.dispatch('json_array_elements')(relation, id_column, json_column, fields, element_type)) }}
{%- endmacro %}

{% macro default__json_array_elements(relation, id_column, json_column, fields, element_type) -%}
    {{ return(trino__json_array_elements(relation, id_column, json_column, fields, element_type)) }}
{%- endmacro %}

{% macro duckdb__json_array_elements(relation, id_column, json_column, fields, element_type) -%}
    {%- if fields is none -%}
        {%- set json_schema = '["' ~ element_type ~ '"]' -%}
    {%- else -%}
        {%- set parts = [] -%}
        {%- for name, data_type in fields -%}
            {%- do parts.append('"' ~ name ~ '":"' ~ data_type ~ '"') -%}
        {%- endfor -%}
        {%- set json_schema = '[{' ~ parts | join(',') ~ '}]' -%}
    {%- endif -%}
    (
        select
            parent_id,
            position,
            {%- if fields is none %}
            element as value
            {%- else %}
            {%- for name, data_type in fields %}
            element."{{ name }}" as "{{ name }}"{{ "," if not loop.last }}
            {%- endfor %}
            {%- endif %}
        from (
            select
                parent_id,
                unnest(range(1, len(elements) + 1)) as position,
                unnest(elements) as element
            from (
                select
                    {{ id_column }} as parent_id,
                    from_json({{ json_column }}, '{{ json_schema }}') as elements
                from {{ relation }}
            ) as parsed
        ) as exploded
    )
{%- endmacro %}

{% macro trino__json_array_elements(relation, id_column, json_column, fields, element_type) -%}
    {%- if fields is none -%}
        {%- set array_type = 'array(' ~ element_type ~ ')' -%}
        {%- set names = ['value'] -%}
    {%- else -%}
        {%- set parts = [] -%}
        {%- set names = [] -%}
        {%- for name, data_type in fields -%}
            {%- do parts.append('"' ~ name ~ '" ' ~ data_type) -%}
            {%- do names.append('"' ~ name ~ '"') -%}
        {%- endfor -%}
        {%- set array_type = 'array(row(' ~ parts | join(', ') ~ '))' -%}
    {%- endif -%}
    (
        select
            parent.{{ id_column }} as parent_id,
            exploded.position,
            {%- for name in names %}
            exploded.{{ name }}{{ "," if not loop.last }}
            {%- endfor %}
        from {{ relation }} as parent
        cross join unnest(cast(json_parse(parent.{{ json_column }}) as {{ array_type }}))
            with ordinality as exploded({{ names | join(', ') }}, position)
    )
{%- endmacro %}


{#- One row per day from `start_column` to `end_column` (inclusive) of a one-row relation,
    column `date_day`. -#}
{% macro date_series(bounds_relation, start_column, end_column) -%}
    {{ return(adapter.dispatch('date_series')(bounds_relation, start_column, end_column)) }}
{%- endmacro %}

{% macro default__date_series(bounds_relation, start_column, end_column) -%}
    {{ return(trino__date_series(bounds_relation, start_column, end_column)) }}
{%- endmacro %}

{% macro duckdb__date_series(bounds_relation, start_column, end_column) -%}
    (
        select
            cast(unnest(generate_series(
                cast({{ start_column }} as timestamp),
                cast({{ end_column }} as timestamp),
                interval 1 day
            )) as date) as date_day
        from {{ bounds_relation }}
    )
{%- endmacro %}

{% macro trino__date_series(bounds_relation, start_column, end_column) -%}
    (
        select days.date_day
        from {{ bounds_relation }}
        cross join unnest(
            sequence(cast({{ start_column }} as date), cast({{ end_column }} as date), interval '1' day)
        ) as days(date_day)
    )
{%- endmacro %}


{#- English day name (Monday ... Sunday) and ISO day of week (1 = Monday ... 7 = Sunday). -#}
{% macro day_name(date_expression) -%}
    {{ return(adapter.dispatch('day_name')(date_expression)) }}
{%- endmacro %}

{% macro default__day_name(date_expression) -%}
    format_datetime({{ date_expression }}, 'EEEE')
{%- endmacro %}

{% macro duckdb__day_name(date_expression) -%}
    dayname({{ date_expression }})
{%- endmacro %}

{% macro month_name(date_expression) -%}
    {{ return(adapter.dispatch('month_name')(date_expression)) }}
{%- endmacro %}

{% macro default__month_name(date_expression) -%}
    format_datetime({{ date_expression }}, 'MMMM')
{%- endmacro %}

{% macro duckdb__month_name(date_expression) -%}
    monthname({{ date_expression }})
{%- endmacro %}

{% macro iso_day_of_week(date_expression) -%}
    {{ return(adapter.dispatch('iso_day_of_week')(date_expression)) }}
{%- endmacro %}

{% macro default__iso_day_of_week(date_expression) -%}
    day_of_week({{ date_expression }})
{%- endmacro %}

{% macro duckdb__iso_day_of_week(date_expression) -%}
    isodow({{ date_expression }})
{%- endmacro %}

{% macro iso_week(date_expression) -%}
    {{ return(adapter.dispatch('iso_week')(date_expression)) }}
{%- endmacro %}

{% macro default__iso_week(date_expression) -%}
    week_of_year({{ date_expression }})
{%- endmacro %}

{% macro duckdb__iso_week(date_expression) -%}
    weekofyear({{ date_expression }})
{%- endmacro %}


{#- Table properties: Iceberg facts on Trino are partitioned by month of their date column. -#}
{% macro month_partitioned(column_name) -%}
    {{ return(adapter.dispatch('month_partitioned')(column_name)) }}
{%- endmacro %}

{% macro default__month_partitioned(column_name) -%}
    {{ return({}) }}
{%- endmacro %}

{% macro trino__month_partitioned(column_name) -%}
    {{ return({'format': "'PARQUET'", 'partitioning': "ARRAY['month(" ~ column_name ~ ")']"}) }}
{%- endmacro %}


{#- Whole days from one date to another (end - start), as an integer. dbt-trino's
    dbt.datediff goes through interval milliseconds; Trino's own date_diff is exact on dates. -#}
{% macro days_between(start_date, end_date) -%}
    {{ return(adapter.dispatch('days_between')(start_date, end_date)) }}
{%- endmacro %}

{% macro default__days_between(start_date, end_date) -%}
    {{ dbt.datediff(start_date, end_date, 'day') }}
{%- endmacro %}

{% macro trino__days_between(start_date, end_date) -%}
    date_diff('day', {{ start_date }}, {{ end_date }})
{%- endmacro %}
