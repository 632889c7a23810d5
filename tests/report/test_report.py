"""The analytics report: its numbers against the marts, its charts in a real browser (Debian
chromium), its empty state, and its command line."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flows.report.charts import report_charts
from flows.report.datasets import QUERIES, ReportData, marts_query, read_report_data
from flows.report.render import HTML_NAME, build_report, write_report
from flows.settings import Settings
from flows.transform.dbt_project import headline_metrics
from tests.browser import PageErrors, screenshot

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
REPO_ROOT = Path(__file__).resolve().parents[2]


def open_report(browser: Any, path: Path, name: str) -> tuple[Any, PageErrors]:
    """Open the report from disk (file://, as a user double-clicks it), wait for every chart."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors = PageErrors()
    errors.watch(page)
    page.goto(path.as_uri(), wait_until="load")
    page.evaluate("() => window.chartsRendered.then(() => true)")
    screenshot(page, name)
    return page, errors


def mark_count(page: Any, key: str) -> int:
    """Rendered marks (bars, cells, points, lines, labels) in one chart's SVG; axes and legends
    are not marks."""
    return int(page.locator(f"#chart-{key} svg g.role-mark > *").count())


def test_headline_numbers_and_datasets_agree_with_the_marts(built_marts: Settings) -> None:
    data = read_report_data(built_marts)
    report = write_report(data, built_marts.report_path)
    metrics = headline_metrics(built_marts)  # the summary artifact's own query
    assert report.headline["orders"] == metrics["orders"]
    assert report.headline["revenue_orders"] == metrics["revenue_orders"]
    assert report.headline["revenue_usd"] == metrics["revenue_usd"]
    # Every chart's data adds up to the same marts.
    monthly = sum(r["amount_usd"] for r in data["monthly"] if r["kind"] == "revenue-bearing")
    assert round(monthly, 2) == metrics["revenue_usd"]
    assert sum(r["orders"] for r in data["monthly"]) == metrics["orders"]
    assert {r["retention_rate"] for r in data["cohorts"] if r["months_since_first_order"] == 0} == {
        1.0
    }
    segmented = sum(metrics["customers_by_segment"].values())
    assert sum(r["customers"] for r in data["segments"]) == segmented
    assert len(data["top_products"]) == 10
    assert all(0 <= r["abandoned"] <= r["carts"] for r in data["carts"])
    assert data.loaded_at is not None and data.loaded_at <= datetime.now(UTC)
    assert data.engine == "DuckDB"


def test_report_renders_every_chart_in_chromium(built_marts: Settings, browser: Any) -> None:
    report = build_report(built_marts)
    assert report.html_path == built_marts.report_path / HTML_NAME
    html = report.html_path.read_text()
    assert "<script src" not in html and "cdn" not in html.lower()  # opens offline
    page, errors = open_report(browser, report.html_path, "report")
    try:
        charts = report_charts(read_report_data(built_marts))
        assert len(charts) == 7 and not any(chart.empty for chart in charts)
        marks = {chart.key: mark_count(page, chart.key) for chart in charts}
        assert all(count > 0 for count in marks.values()), marks
        assert page.locator("#segment-table tbody tr").count() == len(
            read_report_data(built_marts)["segments"]
        )
        revenue = f"${report.headline['revenue_usd']:,.2f}"
        assert revenue in page.locator("#headline").inner_text()
        assert not errors.all, errors.all
    finally:
        page.close()
    # One PNG per chart, real images.
    assert set(report.images) == {chart.key for chart in charts}
    for path in report.images.values():
        assert path.read_bytes().startswith(PNG_MAGIC) and path.stat().st_size > 10_000
    assert set(report.thumbnails) == {"monthly-revenue", "rfm-segments"}


def test_empty_marts_render_a_no_data_page(tmp_path: Path, browser: Any) -> None:
    empty = ReportData(datasets={name: [] for name in QUERIES}, engine="DuckDB", loaded_at=None)
    report = write_report(empty, tmp_path)
    assert report.empty and report.images == {} and report.thumbnails == {}
    page, errors = open_report(browser, report.html_path, "report-empty")
    try:
        assert page.locator("#no-data").is_visible()
        assert page.locator(".no-data").count() == 1 + 7  # the page note + one per chart
        assert "never" in page.locator(".meta").inner_text()
        assert not errors.all, errors.all
    finally:
        page.close()


def test_a_single_order_renders_every_chart(tmp_path: Path, browser: Any) -> None:
    """Tiny data (one order, one customer) still draws marks, not broken scales."""
    day = "2026-05-01"
    tiny = ReportData(
        datasets={
            "headline": [
                {
                    "orders": 1,
                    "revenue_orders": 1,
                    "revenue_usd": 12.5,
                    "customers": 1,
                    "first_order_date": day,
                    "last_order_date": day,
                }
            ],
            "monthly": [{"month": day, "kind": "revenue-bearing", "orders": 1, "amount_usd": 12.5}],
            "cohorts": [
                {
                    "cohort_month": day,
                    "months_since_first_order": 0,
                    "cohort_size": 1,
                    "active_customers": 1,
                    "retention_rate": 1.0,
                }
            ],
            "segments": [
                {
                    "segment": "New Customers",
                    "customers": 1,
                    "avg_recency_days": 3.0,
                    "avg_frequency": 1.0,
                    "revenue_usd": 12.5,
                }
            ],
            "top_products": [{"product": "Mug", "revenue_usd": 12.5, "units": 1}],
            "top_categories": [{"category": "Kitchen", "revenue_usd": 12.5}],
            "payments": [
                {
                    "payment_method": "stripe",
                    "status": "succeeded",
                    "transactions": 1,
                    "amount_usd": 12.5,
                }
            ],
            "carts": [{"month": day, "carts": 1, "abandoned": 0}],
        },
        engine="DuckDB",
        loaded_at=datetime(2026, 5, 2, tzinfo=UTC),
    )
    report = write_report(tiny, tmp_path)
    page, errors = open_report(browser, report.html_path, "report-single-order")
    try:
        for chart in report_charts(tiny):
            assert mark_count(page, chart.key) > 0, chart.key
        assert not errors.all, errors.all
    finally:
        page.close()


def test_report_command_renders_from_built_marts(built_marts: Settings, tmp_path: Path) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "LAKEHOUSE_DIR": str(built_marts.lakehouse_path),
        "REPORT_DIR": str(tmp_path / "out"),
    }
    result = subprocess.run(
        [sys.executable, "-m", "flows.report"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"{tmp_path / 'out' / HTML_NAME}" in result.stdout
    assert (tmp_path / "out" / "cohort-retention.png").exists()


def test_report_command_without_marts_says_what_to_run(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "LAKEHOUSE_DIR": str(tmp_path / "nothing-built")}
    result = subprocess.run(
        [sys.executable, "-m", "flows.report"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1
    assert "run `dbt build` first" in result.stderr
    assert "Traceback" not in result.stderr


def test_marts_query_returns_plain_values(built_marts: Settings) -> None:
    with marts_query(built_marts) as query:
        row = query(QUERIES["headline"].format(marts=built_marts.iceberg_marts_namespace))[0]
    assert isinstance(row["revenue_usd"], float)  # Decimal -> float for the charts
    assert isinstance(row["first_order_date"], str)
