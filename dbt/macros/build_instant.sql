{#-
    The instant this build describes, as a UTC timestamp without time zone. Values that depend
    on it (a cart's status, a customer's lifetime in days) are computed against it.
    var `build_at` (or, for runs started by the flow, the environment variable DBT_BUILD_AT)
    pins it (ISO 8601 UTC, e.g. '2026-11-01T12:00:00Z' or '2026-11-01 12:00:00'): tests and the
    Trino-vs-DuckDB comparison give both builds the same instant. Default: the start of the dbt
    invocation (`run_started_at`, UTC), the same for every model of a run.
-#}
{% macro build_instant() -%}
    {%- set pinned = var('build_at', none) or env_var('DBT_BUILD_AT', '') -%}
    {%- if pinned -%}
        {%- set text = (pinned | string) | replace('T', ' ') | replace('Z', '') -%}
    {%- else -%}
        {%- set text = run_started_at.strftime('%Y-%m-%d %H:%M:%S.%f') -%}
    {%- endif -%}
    {{ return(adapter.dispatch('timestamp_literal')(text)) }}
{%- endmacro %}

{% macro build_date() -%}
    cast({{ build_instant() }} as date)
{%- endmacro %}

{% macro default__timestamp_literal(text) -%}
    cast('{{ text }}' as {{ dbt.type_timestamp() }})
{%- endmacro %}

{% macro trino__timestamp_literal(text) -%}
    cast('{{ text }}' as timestamp(6))
{%- endmacro %}


{#-
    Payload ecommerce's cart status, computed when a cart is read (its `status` field is
    virtual: it changes with time without bumping `updatedAt`): `purchased` once purchasedAt
    is set; else `active` while the cart is younger than var `cart_active_days` (7) at the build
    instant; else `abandoned` (also when createdAt is missing).
-#}
{% macro cart_status(purchased_at, created_at) -%}
    case
        when {{ purchased_at }} is not null then 'purchased'
        when {{ created_at }} > {{ build_instant() }} - interval '{{ var("cart_active_days") }}' day
            then 'active'
        else 'abandoned'
    end
{%- endmacro %}
