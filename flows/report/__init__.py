"""The analytics report: charts of the marts in one offline HTML page plus PNGs.

`build_report(settings)` reads the marts through dbt's engine (DuckDB locally, Trino in
production) and writes REPORT_DIR/report.html and one PNG per chart. The flow calls it after
the marts are built; `python -m flows.report` (`make report`) renders it alone.
"""
