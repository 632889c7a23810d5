"""`python -m flows.report`: render the analytics report from the marts already built."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from flows.report.render import build_report
from flows.settings import load_settings


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m flows.report",
        description="Render the analytics report (HTML + PNGs) from the marts dbt built, "
        "on the configured engine (DBT_TARGET=local: DuckDB, trino: Trino).",
    )
    parser.parse_args(argv)
    settings = load_settings()
    try:
        report = build_report(settings)
    except FileNotFoundError as error:  # no DuckDB file yet: nothing was built
        print(f"error: {error}", file=sys.stderr)
        return 1
    state = "no data yet" if report.empty else f"{report.headline['orders']:,} orders"
    print(f"report ({state}, {report.seconds:.1f} s): {report.html_path}")
    for key, path in report.images.items():
        print(f"  {key}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
