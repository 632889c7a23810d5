"""The production-shaped stack on one machine: S3 (moto), an Iceberg REST catalog, Trino, and a
Prefect server on PostgreSQL, all on loopback.

    python -m deployments.stack up        # install what is missing, start, wait until healthy
    python -m deployments.stack status    # one line per service
    python -m deployments.stack env       # the pipeline's settings (.stack/stack.env)
    python -m deployments.stack down      # stop what `up` started

`make stack-up`, `make stack-status` and `make stack-down` call these. `up` is idempotent: a
healthy service is left as it is. Logs: `.stack/logs/<service>.log`.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from deployments.stack import services as svc
from deployments.stack.config import StackConfig, load_config
from deployments.stack.install import (
    StackError,
    find_java,
    iceberg_rest_jar,
    trino_cli_jar,
    trino_home,
)
from deployments.stack.processes import wait_until


def up(config: StackConfig) -> dict[str, float]:
    """Start every service that is not healthy; returns seconds per phase."""
    timings: dict[str, float] = {}
    started = time.monotonic()
    config.dir.mkdir(parents=True, exist_ok=True)
    down_services = tuple(s for s in svc.SERVICES if not svc.healthy(s, config))
    if not down_services:
        write_env(config)
        return timings
    svc.check_ports(config, down_services)

    # Installs first (downloads once into the shared cache), so a failure starts nothing.
    needs_java = bool({svc.CATALOG, svc.TRINO} & set(down_services))
    java_home = find_java(config) if needs_java else Path()
    if svc.TRINO in down_services:
        trino_home(config)
        write_trino_client(config, java_home)
    if svc.CATALOG in down_services:
        iceberg_rest_jar(config)
    if svc.POSTGRES in down_services:
        svc.postgres_bin()
    timings["install_s"] = time.monotonic() - started

    # The slow starters (Trino, Prefect) are launched early and waited for last.
    if svc.S3 in down_services:
        svc.start_s3(config)
    launched = {}
    if svc.CATALOG in down_services:
        launched[svc.CATALOG] = svc.start_catalog(config, java_home)
    if svc.TRINO in down_services:
        launched[svc.TRINO] = svc.start_trino(config, java_home)
    if svc.POSTGRES in down_services:
        svc.start_postgres(config)
    if svc.PREFECT in down_services:
        launched[svc.PREFECT] = svc.start_prefect(config)
    for service, process in launched.items():
        wait_until(
            lambda service=service: svc.healthy(service, config),  # type: ignore[misc]
            what=service.name,
            timeout=service.start_timeout,
            process=process,
        )
        timings[f"{service.name}_ready_s"] = time.monotonic() - started
    if svc.PREFECT in down_services or svc.S3 in down_services:
        svc.register_blocks(config)
    write_env(config)
    timings["total_s"] = time.monotonic() - started
    return timings


def down(config: StackConfig) -> list[str]:
    """Stop the services this stack started (Prefect first, then its database)."""
    stopped = []
    for service in (svc.PREFECT, svc.TRINO, svc.CATALOG, svc.S3):
        if service.process(config).stop():
            stopped.append(service.name)
    if svc.stop_postgres(config):
        stopped.append(svc.POSTGRES.name)
    return stopped


def write_trino_client(config: StackConfig, java_home: Path) -> Path:
    """`.stack/bin/trino`: Trino's own command-line client, pointed at the stack."""
    jar = trino_cli_jar(config)
    script = config.dir / "bin" / "trino"
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(
        "#!/bin/sh\n"
        "# Trino's CLI on the local stack, e.g. .stack/bin/trino --execute 'show schemas'\n"
        f'exec "{java_home / "bin" / "java"}" -jar "{jar}" --server {config.trino_url} '
        '--catalog iceberg --user "${TRINO_USER:-lakehouse}" "$@"\n'
    )
    script.chmod(0o755)
    return script


def write_env(config: StackConfig) -> None:
    lines = [
        "# The pipeline's settings for the local stack (written by `make stack-up`).",
        "# Local throw-away services only: no real secret here.",
        *(f"{key}={value}" for key, value in config.pipeline_environment().items()),
    ]
    config.env_file.write_text("\n".join(lines) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deployments.stack", description=__doc__)
    parser.add_argument("command", choices=["up", "down", "status", "env"])
    args = parser.parse_args(argv)
    config = load_config()
    try:
        if args.command == "up":
            timings = up(config)
            print_status(config)
            if timings:
                print("stack: up in " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))
            print(f"stack: pipeline settings in {config.env_file}")
        elif args.command == "down":
            stopped = down(config)
            print("stack: stopped " + (", ".join(stopped) if stopped else "nothing (not running)"))
        elif args.command == "status":
            return 0 if print_status(config) else 1
        else:
            write_env(config)
            print(config.env_file.read_text(), end="")
    except StackError as error:
        print(f"stack: {error}", file=sys.stderr)
        return 1
    return 0


def print_status(config: StackConfig) -> bool:
    report = svc.status(config)
    for name, state in report.items():
        print(f"  {name:<9} {state}")
    return all(state.startswith("healthy") for state in report.values())


if __name__ == "__main__":
    sys.exit(main())
