"""The report's charts as Vega-Lite specs, built with altair from `ReportData`.

Vega-Lite (through altair) because one spec serves both outputs: the browser renders it from
the inlined Vega bundle, and vl-convert renders the same spec to PNG in-process, with no
browser, no Node and no network. A chart whose data is empty is `None`: the page shows a
"no data yet" panel for it instead of an empty frame.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import altair as alt

from flows.report.datasets import ReportData, Rows

WIDTH = 560
HEIGHT = 280
MONEY = "$,.0f"


@dataclass(frozen=True)
class Chart:
    """One chart of the report: a stable key (element id, PNG name), a title, what it shows."""

    key: str
    title: str
    caption: str
    spec: dict[str, Any] | None  # None: no data yet

    @property
    def empty(self) -> bool:
        return self.spec is None


def _data(rows: Rows) -> alt.Data:
    return alt.Data(values=rows)


def monthly_revenue(rows: Rows) -> alt.TopLevelMixin:
    base = alt.Chart(_data(rows)).encode(
        x=alt.X("yearmonth(month):T", title="Month", axis=alt.Axis(format="%b %Y"))
    )
    bars = base.mark_bar().encode(
        y=alt.Y("sum(amount_usd):Q", title="Order amount (USD)", axis=alt.Axis(format=MONEY)),
        color=alt.Color(
            "kind:N",
            title="Orders",
            scale=alt.Scale(
                domain=["revenue-bearing", "cancelled or refunded", "other"],
                range=["#2b6cb0", "#e53e3e", "#a0aec0"],
            ),
        ),
        tooltip=[
            alt.Tooltip("yearmonth(month):T", title="Month"),
            alt.Tooltip("kind:N", title="Orders"),
            alt.Tooltip("sum(orders):Q", title="Count"),
            alt.Tooltip("sum(amount_usd):Q", title="Amount", format=MONEY),
        ],
    )
    line = base.mark_line(point=True, color="#1a202c").encode(
        y=alt.Y("sum(orders):Q", title="Orders (all statuses)")
    )
    return alt.layer(bars, line).resolve_scale(y="independent")


def cohort_heatmap(rows: Rows) -> alt.TopLevelMixin:
    base = alt.Chart(_data(rows)).encode(
        x=alt.X("months_since_first_order:O", title="Months since first order"),
        y=alt.Y("yearmonth(cohort_month):O", title="Cohort (first order month)"),
    )
    cells = base.mark_rect().encode(
        color=alt.Color(
            "retention_rate:Q",
            title="Retention",
            scale=alt.Scale(scheme="blues", domain=[0, 1]),
            legend=alt.Legend(format=".0%"),
        ),
        tooltip=[
            alt.Tooltip("yearmonth(cohort_month):T", title="Cohort"),
            alt.Tooltip("months_since_first_order:O", title="Month"),
            alt.Tooltip("cohort_size:Q", title="Cohort size"),
            alt.Tooltip("active_customers:Q", title="Active"),
            alt.Tooltip("retention_rate:Q", title="Retention", format=".1%"),
        ],
    )
    labels = base.mark_text(fontSize=9).encode(
        text=alt.Text("retention_rate:Q", format=".0%"),
        color=alt.condition("datum.retention_rate > 0.5", alt.value("white"), alt.value("black")),
    )
    return alt.layer(cells, labels)


def rfm_bubbles(rows: Rows) -> alt.TopLevelMixin:
    return (
        alt.Chart(_data(rows))
        .mark_circle(opacity=0.75, stroke="#1a202c", strokeWidth=0.5)
        .encode(
            x=alt.X("avg_recency_days:Q", title="Average recency (days since last order)"),
            y=alt.Y("avg_frequency:Q", title="Average frequency (orders)"),
            size=alt.Size(
                "revenue_usd:Q", title="Revenue", scale=alt.Scale(range=[60, 2400]), legend=None
            ),
            color=alt.Color("segment:N", title="Segment", scale=alt.Scale(scheme="tableau10")),
            tooltip=[
                alt.Tooltip("segment:N", title="Segment"),
                alt.Tooltip("customers:Q", title="Customers"),
                alt.Tooltip("avg_recency_days:Q", title="Recency (days)", format=".0f"),
                alt.Tooltip("avg_frequency:Q", title="Frequency", format=".1f"),
                alt.Tooltip("revenue_usd:Q", title="Revenue", format=MONEY),
            ],
        )
    )


def ranked_bars(rows: Rows, label: str, title: str) -> alt.TopLevelMixin:
    return (
        alt.Chart(_data(rows))
        .mark_bar(color="#2b6cb0")
        .encode(
            x=alt.X("revenue_usd:Q", title="Revenue (USD)", axis=alt.Axis(format=MONEY)),
            y=alt.Y(f"{label}:N", title=title, sort="-x"),
            tooltip=[
                alt.Tooltip(f"{label}:N", title=title),
                alt.Tooltip("revenue_usd:Q", title="Revenue", format=MONEY),
            ],
        )
    )


def payments(rows: Rows) -> alt.TopLevelMixin:
    return (
        alt.Chart(_data(rows))
        .mark_bar()
        .encode(
            x=alt.X("sum(transactions):Q", title="Transactions"),
            y=alt.Y("payment_method:N", title="Payment method", sort="-x"),
            color=alt.Color("status:N", title="Status", scale=alt.Scale(scheme="set2")),
            tooltip=[
                alt.Tooltip("payment_method:N", title="Method"),
                alt.Tooltip("status:N", title="Status"),
                alt.Tooltip("sum(transactions):Q", title="Transactions"),
                alt.Tooltip("sum(amount_usd):Q", title="Amount", format=MONEY),
            ],
        )
    )


def abandoned_carts(rows: Rows) -> alt.TopLevelMixin:
    return (
        alt.Chart(_data(rows))
        .transform_calculate(rate="datum.carts > 0 ? datum.abandoned / datum.carts : 0")
        .mark_line(point=True, color="#dd6b20")
        .encode(
            x=alt.X(
                "yearmonth(month):T",
                title="Month carts were created",
                axis=alt.Axis(format="%b %Y", labelOverlap=True),
            ),
            y=alt.Y("rate:Q", title="Abandoned carts", axis=alt.Axis(format=".0%")),
            tooltip=[
                alt.Tooltip("yearmonth(month):T", title="Month"),
                alt.Tooltip("carts:Q", title="Carts"),
                alt.Tooltip("abandoned:Q", title="Abandoned"),
                alt.Tooltip("rate:Q", title="Rate", format=".1%"),
            ],
        )
    )


def _spec(
    rows: Rows, build: Callable[[Rows], alt.TopLevelMixin], height: int = HEIGHT
) -> dict[str, Any] | None:
    if not rows:
        return None
    chart = build(rows).properties(width=WIDTH, height=height)
    return chart.to_dict()


def report_charts(data: ReportData) -> list[Chart]:
    """The report's charts, in page order."""

    def products(rows: Rows) -> alt.TopLevelMixin:
        return ranked_bars(rows, "product", "Product")

    def categories(rows: Rows) -> alt.TopLevelMixin:
        return ranked_bars(rows, "category", "Primary category")

    return [
        Chart(
            "monthly-revenue",
            "Monthly revenue and orders",
            "Bars: order amount by month, revenue-bearing vs cancelled or refunded. "
            "Line: orders placed (all statuses).",
            _spec(data["monthly"], monthly_revenue),
        ),
        Chart(
            "cohort-retention",
            "Cohort retention",
            "Share of each first-order cohort that ordered again n months later.",
            _spec(data["cohorts"], cohort_heatmap, height=max(HEIGHT, 22 * _cohorts(data))),
        ),
        Chart(
            "rfm-segments",
            "RFM segments",
            "One bubble per segment: average recency vs frequency; size is the segment's revenue.",
            _spec(data["segments"], rfm_bubbles),
        ),
        Chart(
            "top-products",
            "Top products by revenue",
            "Revenue-bearing order lines, top 10.",
            _spec(data["top_products"], products),
        ),
        Chart(
            "top-categories",
            "Top categories by revenue",
            "Revenue-bearing order lines by the product's primary category, top 10.",
            _spec(data["top_categories"], categories),
        ),
        Chart(
            "payments",
            "Payment methods and transaction statuses",
            "Transactions by payment method, coloured by status.",
            _spec(data["payments"], payments, height=HEIGHT // 2),
        ),
        Chart(
            "abandoned-carts",
            "Abandoned-cart rate",
            "Share of the carts created each month that are abandoned now (7 days, no purchase).",
            _spec(data["carts"], abandoned_carts),
        ),
    ]


def _cohorts(data: ReportData) -> int:
    return len({row["cohort_month"] for row in data["cohorts"]})
