{#- The grain of a model is a set of columns: no two rows share the same values in all of
    them (rows with a null in any of them are not counted; pair it with not_null). Usage:
        data_tests:
          - unique_combination:
              arguments:
                columns: [order_id, line_number]
-#}
{% test unique_combination(model, columns) %}

select
    {% for column in columns -%}
    {{ column }},
    {% endfor -%}
    count(*) as occurrences
from {{ model }}
where {% for column in columns -%}
    {{ column }} is not null{{ " and " if not loop.last }}
    {%- endfor %}
group by {% for column in columns -%}
    {{ column }}{{ ", " if not loop.last }}
    {%- endfor %}
having count(*) > 1

{% endtest %}
