"""Write the report: one self-contained HTML page plus a PNG per chart.

The page inlines the Vega bundle that vl-convert ships (no CDN: it opens offline, from a file
or an artifact store), embeds each chart's spec, and renders them as SVG in the browser. The
PNGs come from the same specs through vl-convert, for places that cannot run scripts (Prefect
artifacts, the README, e-mail).
"""

from __future__ import annotations

import html
import json
import logging
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import vl_convert

from flows.report.charts import Chart, report_charts
from flows.report.datasets import ReportData, read_report_data
from flows.settings import Settings

log = logging.getLogger(__name__)

HTML_NAME = "report.html"
PNG_SCALE = 2.0
# Small PNGs of the two charts a Prefect artifact shows inline (as data URIs: the artifact
# cannot reach the report's folder, so the images travel inside it).
THUMBNAIL_CHARTS = ("monthly-revenue", "rfm-segments")
THUMBNAIL_SCALE = 0.6


@dataclass(frozen=True)
class Report:
    """Where a rendered report is, what it says at a glance, and how long it took."""

    html_path: Path
    images: dict[str, Path]  # chart key -> PNG
    thumbnails: dict[str, bytes]  # chart key -> small PNG, for the Prefect artifact
    headline: dict[str, Any]
    empty: bool
    seconds: float


@cache
def vega_bundle() -> str:
    """Vega, Vega-Lite and vega-embed as one script, exposing `vegaEmbed` on `window`."""
    return vl_convert.javascript_bundle("window.vegaEmbed = vegaEmbed;")


def headline(data: ReportData) -> dict[str, Any]:
    """The numbers at the top of the page (and of the Prefect artifact)."""
    row = data["headline"][0] if data["headline"] else {}
    revenue = float(row.get("revenue_usd") or 0)
    revenue_orders = int(row.get("revenue_orders") or 0)
    return {
        "orders": int(row.get("orders") or 0),
        "revenue_orders": revenue_orders,
        "revenue_usd": round(revenue, 2),
        "average_order_usd": round(revenue / revenue_orders, 2) if revenue_orders else None,
        "customers": int(row.get("customers") or 0),
        "first_order_date": row.get("first_order_date"),
        "last_order_date": row.get("last_order_date"),
        "loaded_at": data.loaded_at.isoformat(timespec="seconds") if data.loaded_at else None,
        "generated_at": data.generated_at.isoformat(timespec="seconds"),
        "engine": data.engine,
    }


def _script_json(value: Any) -> str:
    # A spec inside <script>: "</" would end the element early.
    return json.dumps(value, separators=(",", ":")).replace("</", "<\\/")


def _money(value: float | None) -> str:
    return "n/a" if value is None else f"${value:,.2f}"


def _day(value: str | None) -> str:
    return value[:10] if value else "n/a"


def instant(iso: str | None) -> str:
    """`2026-12-04 20:57 UTC` from an ISO timestamp (the headline's times are UTC)."""
    return f"{iso[:10]} {iso[11:16]} UTC" if iso else "never"


def _cards(numbers: dict[str, Any]) -> str:
    period = f"{_day(numbers['first_order_date'])} to {_day(numbers['last_order_date'])}"
    cards = [
        ("Revenue", _money(numbers["revenue_usd"]), "revenue-bearing orders"),
        ("Orders", f"{numbers['orders']:,}", f"{numbers['revenue_orders']:,} revenue-bearing"),
        ("Average order", _money(numbers["average_order_usd"]), "revenue-bearing orders"),
        ("Customers", f"{numbers['customers']:,}", "with a revenue-bearing order"),
    ]
    items = "".join(
        f'<div class="card"><div class="label">{html.escape(label)}</div>'
        f'<div class="value">{html.escape(value)}</div>'
        f'<div class="note">{html.escape(note)}</div></div>'
        for label, value, note in cards
    )
    loaded = instant(numbers["loaded_at"])
    return (
        f'<section class="cards" id="headline">{items}</section>'
        f'<p class="meta">Orders placed {html.escape(period)}. Data last loaded '
        f"{html.escape(loaded)}; report generated {html.escape(instant(numbers['generated_at']))} "
        f"from the marts on {html.escape(numbers['engine'])}.</p>"
    )


def _segment_table(data: ReportData) -> str:
    rows = data["segments"]
    if not rows:
        return ""
    total = sum(float(row["revenue_usd"] or 0) for row in rows) or 1.0
    body = "".join(
        f"<tr><td>{html.escape(str(row['segment']))}</td><td>{int(row['customers']):,}</td>"
        f"<td>{_money(float(row['revenue_usd'] or 0))}</td>"
        f"<td>{float(row['revenue_usd'] or 0) / total:.1%}</td></tr>"
        for row in rows
    )
    return (
        '<section class="panel"><h2>RFM segments</h2><table id="segment-table">'
        "<thead><tr><th>Segment</th><th>Customers</th><th>Revenue</th><th>Share of revenue</th>"
        f"</tr></thead><tbody>{body}</tbody></table></section>"
    )


def _panel(chart: Chart) -> str:
    title = html.escape(chart.title)
    caption = f'<p class="caption">{html.escape(chart.caption)}</p>'
    if chart.empty:
        return (
            f'<section class="panel" data-chart="{chart.key}"><h2>{title}</h2>{caption}'
            f'<div class="no-data" id="chart-{chart.key}">No data yet: run the pipeline '
            "to load orders into the marts.</div></section>"
        )
    return (
        f'<section class="panel" data-chart="{chart.key}"><h2>{title}</h2>{caption}'
        f'<div class="chart" id="chart-{chart.key}"></div></section>'
    )


STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto;
  max-width: 1280px; color: #1a202c; background: #f7fafc; padding: 0 1rem; }
h1 { margin-bottom: 0.2rem; } h2 { font-size: 1.1rem; margin: 0 0 0.3rem; }
.meta, .caption { color: #4a5568; font-size: 0.9rem; }
.cards { display: grid; grid-template-columns: repeat(4, 1fr); gap: 1rem; margin: 1rem 0; }
.card, .panel { background: white; border: 1px solid #e2e8f0; border-radius: 8px; padding: 1rem; }
.card .label { color: #4a5568; font-size: 0.85rem; } .card .value { font-size: 1.6rem;
  font-weight: 600; } .card .note { color: #718096; font-size: 0.8rem; }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(560px, 1fr)); gap: 1rem; }
.chart { width: 100%; }
.no-data { padding: 3rem 1rem; text-align: center; color: #718096; background: #edf2f7;
  border-radius: 6px; }
table { border-collapse: collapse; width: 100%; } th, td { text-align: left;
  padding: 0.3rem 0.6rem; border-bottom: 1px solid #e2e8f0; } td:not(:first-child),
th:not(:first-child) { text-align: right; }
"""


def page(data: ReportData, charts: list[Chart]) -> str:
    """The whole report as one HTML document (scripts and styles inlined)."""
    numbers = headline(data)
    empty_note = (
        ""
        if data.has_orders
        else '<p class="no-data" id="no-data">No data yet: the marts hold no orders. Run '
        "<code>make run</code> (or the flow) and open this report again.</p>"
    )
    # In the page a chart fills its panel (the PNGs keep the fixed width of the spec).
    specs = {
        chart.key: {**chart.spec, "width": "container", "autosize": {"type": "fit"}}
        for chart in charts
        if chart.spec is not None
    }
    panels = "".join(_panel(chart) for chart in charts)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Store analytics - payload-lakehouse</title><style>{STYLE}</style>
<script>{vega_bundle()}</script></head>
<body><h1>Store analytics</h1>{_cards(numbers)}{empty_note}
<div class="grid">{panels}</div>{_segment_table(data)}
<script>
const specs = {_script_json(specs)};
window.chartsRendered = Promise.all(Object.entries(specs).map(([key, spec]) =>
  vegaEmbed("#chart-" + key, spec, {{renderer: "svg", actions: false}})));
</script></body></html>
"""


def png(chart: Chart, scale: float = PNG_SCALE) -> bytes:
    assert chart.spec is not None, f"{chart.key} has no data to draw"
    return bytes(vl_convert.vegalite_to_png(chart.spec, scale=scale))


def write_png(chart: Chart, path: Path) -> Path:
    path.write_bytes(png(chart))
    return path


def write_report(data: ReportData, directory: Path) -> Report:
    """Render `data` into `directory` (report.html + one PNG per chart with data)."""
    started = time.perf_counter()
    directory.mkdir(parents=True, exist_ok=True)
    charts = report_charts(data)
    images = {
        chart.key: write_png(chart, directory / f"{chart.key}.png")
        for chart in charts
        if not chart.empty
    }
    for stale in directory.glob("*.png"):  # charts that have no data any more
        if stale not in images.values():
            stale.unlink()
    html_path = directory / HTML_NAME
    tmp = html_path.with_suffix(".html.tmp")
    tmp.write_text(page(data, charts), encoding="utf-8")
    tmp.replace(html_path)  # a reader never sees half a page
    return Report(
        html_path=html_path,
        images=images,
        thumbnails={
            chart.key: png(chart, THUMBNAIL_SCALE)
            for chart in charts
            if chart.key in THUMBNAIL_CHARTS and not chart.empty
        },
        headline=headline(data),
        empty=not data.has_orders,
        seconds=round(time.perf_counter() - started, 3),
    )


def build_report(settings: Settings) -> Report:
    """Read the marts through dbt's engine and write the report to REPORT_DIR."""
    report = write_report(read_report_data(settings), settings.report_path)
    log.info("analytics report written to %s in %.1f s", report.html_path, report.seconds)
    return report
