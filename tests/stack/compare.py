"""Mart-by-mart comparison of two engines' builds: every row as a multiset, money exact.

Values are normalised to what they mean, not how each engine types them: decimals compare
exactly (as Decimal), doubles to 12 significant digits (the two engines sum in different
orders), timestamps as naive UTC instants, booleans as booleans.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import duckdb

# Columns whose value is the instant a row was loaded or built, not a fact of the store.
BUILD_TIME_COLUMNS = frozenset({"loaded_at", "_loaded_at", "built_at"})


def normalise(value: Any) -> Any:
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, Decimal):
        return value.normalize()
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        return float(f"{value:.12g}")
    if isinstance(value, int):
        return Decimal(value).normalize()
    if isinstance(value, datetime):
        return (value.replace(tzinfo=None) if value.tzinfo is None else value).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return value


def multiset(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> Counter[tuple[Any, ...]]:
    keep = [i for i, name in enumerate(columns) if name not in BUILD_TIME_COLUMNS]
    return Counter(tuple(normalise(row[i]) for i in keep) for row in rows)


def duckdb_table(path: str, schema: str, table: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    with duckdb.connect(path, read_only=True) as connection:
        result = connection.execute(f'select * from "{schema}"."{table}"')
        columns = [d[0] for d in result.description]
        return columns, result.fetchall()


def trino_table(cursor: Any, schema: str, table: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    cursor.execute(f'select * from "{schema}"."{table}"')
    rows = [tuple(row) for row in cursor.fetchall()]
    columns = [d[0] for d in cursor.description]
    return columns, rows


def difference(
    left: tuple[list[str], list[tuple[Any, ...]]],
    right: tuple[list[str], list[tuple[Any, ...]]],
    limit: int = 5,
) -> str | None:
    """None when both sides hold the same rows (columns matched by name), else a description."""
    left_columns, left_rows = left
    right_columns, right_rows = right
    if sorted(left_columns) != sorted(right_columns):
        return f"columns differ: {sorted(set(left_columns) ^ set(right_columns))}"
    order = [right_columns.index(name) for name in left_columns]
    right_rows = [tuple(row[i] for i in order) for row in right_rows]
    a = multiset(left_columns, left_rows)
    b = multiset(left_columns, right_rows)
    if a == b:
        return None
    only_left = list((a - b).elements())[:limit]
    only_right = list((b - a).elements())[:limit]
    return (
        f"{sum(a.values())} vs {sum(b.values())} rows; {sum((a - b).values())} only left, "
        f"{sum((b - a).values())} only right; columns {left_columns}\n"
        f"  only left:  {only_left}\n  only right: {only_right}"
    )
