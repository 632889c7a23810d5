"""Run the dbt project without Prefect, with the environment the settings imply.

Usage::

    python -m flows.transform build            # any dbt command and flags
    python -m flows.transform run --select marts --full-refresh
    python -m flows.transform publish          # local target: marts -> Iceberg ecommerce_marts
    python -m flows.transform metrics          # headline metrics as JSON
    python -m flows.transform env              # print the dbt environment (secrets masked)
"""

from __future__ import annotations

import json
import logging
import sys

from flows.settings import get_settings
from flows.transform.dbt_project import (
    DbtRunError,
    dbt_environment,
    headline_metrics,
    publish_marts,
    run_dbt,
)
from flows.transform.lock import DuckDBLockTimeoutError

SECRET_VARIABLES = frozenset({"TRINO_PASSWORD", "TRINO_JWT_TOKEN"})


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__)
        return 2
    settings = get_settings()
    command = argv[0]
    if command == "publish":
        for identifier in publish_marts(settings):
            print(identifier)
        return 0
    if command == "metrics":
        print(json.dumps(headline_metrics(settings), indent=2))
        return 0
    if command == "env":
        for name, value in sorted(dbt_environment(settings).items()):
            print(f"{name}={'***' if name in SECRET_VARIABLES else value}")
        return 0
    # Our own messages (e.g. waiting for another build's DuckDB lock) on stderr.
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    try:
        run_dbt(settings, argv)
    except DbtRunError as error:
        print(error, file=sys.stderr)
        return 1
    except DuckDBLockTimeoutError as error:
        print(f"DuckDBLockTimeoutError: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
