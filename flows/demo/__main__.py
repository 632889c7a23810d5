"""`python -m flows.demo serve ...`: run the demo Payload API until SIGINT / SIGTERM.

The first stdout line is machine-readable (`DEMO_API_URL=http://HOST:PORT`), so
`flows.demo.process.DemoProcess` (and scripts) can start it with `--port 0` and read the URL.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from types import FrameType

from flows.demo.faults import FaultPlan
from flows.source.ids import IdType

URL_PREFIX = "DEMO_API_URL="


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m flows.demo", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve the demo Payload CMS REST API")
    serve.add_argument("--preset", choices=("small", "medium", "large"), default="small")
    serve.add_argument("--scale", type=int, default=1, help="multiply the preset's volumes")
    serve.add_argument("--seed", type=int, default=42, help="data and fault seed")
    serve.add_argument(
        "--id-type",
        choices=[t.value for t in IdType],
        default=os.environ.get("DEMO_ID_TYPE") or IdType.INT.value,
        help="document ids: int (SQLite/PostgreSQL serial), objectid (MongoDB), uuid "
        "(PostgreSQL idType uuid); default DEMO_ID_TYPE, else int",
    )
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=3000, help="0 picks a free port")
    serve.add_argument("--admin-email", default="admin@example.com")
    serve.add_argument("--admin-password", default="demo-password")
    serve.add_argument("--api-key", default=None, help="accept `users API-Key <KEY>`")
    serve.add_argument("--token-ttl", type=int, default=7200, help="JWT lifetime in seconds")
    serve.add_argument(
        "--faults",
        default=None,
        help='fault spec, e.g. "503:0.1x3,429:0.05@2,reset:0.02,truncate:0.05,latency:0.1@2.0,'
        'max=50" (see docs/demo-api.md)',
    )
    serve.add_argument("--verbose", action="store_true", help="log every request to stderr")
    return parser


def serve(args: argparse.Namespace) -> int:
    from flows.demo.server import serve_demo

    if args.scale < 1:
        print("--scale must be >= 1", file=sys.stderr)
        return 2
    try:
        faults = FaultPlan.parse(args.faults, seed=args.seed) if args.faults else None
    except ValueError as exc:
        print(f"--faults: {exc}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    server = serve_demo(
        args.preset,
        args.scale,
        args.seed,
        IdType(args.id_type),
        host=args.host,
        port=args.port,
        admin_email=args.admin_email,
        admin_password=args.admin_password,
        api_key=args.api_key,
        faults=faults,
        token_ttl_seconds=args.token_ttl,
        verbose=args.verbose,
    )
    server.prewarm()
    try:
        server.start()
    except OSError as exc:
        print(f"cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    counts = ", ".join(f"{name} {server.store.count(name)}" for name in server.store.names())
    url = server.url
    print(f"{URL_PREFIX}{url}", flush=True)
    print(
        f"Demo Payload CMS API (preset {args.preset}, scale {args.scale}, seed {args.seed}) "
        f"ready in {time.perf_counter() - started:.1f}s: {url}/api\n"
        f"  documents: {counts}\n"
        f"  admin login: {args.admin_email} / {args.admin_password}\n"
        f"  get a token: curl -s -X POST {url}/api/users/login "
        f"-H 'Content-Type: application/json' "
        f'-d \'{{"email":"{args.admin_email}","password":"{args.admin_password}"}}\'\n'
        f"  then:        curl -g -H 'Authorization: JWT <token>' "
        f"'{url}/api/orders?limit=2&depth=0'",
        flush=True,
    )
    if args.api_key:
        print(f"  or:          -H 'Authorization: users API-Key {args.api_key}'", flush=True)
    if faults is not None and faults.rules:
        print(f"  faults:      {args.faults}", flush=True)
    print("Press Ctrl+C to stop.", flush=True)

    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    while not stop.wait(0.5):
        pass
    server.stop()
    print("Demo API stopped.", flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        return serve(args)
    return 2  # pragma: no cover (argparse enforces the command)


if __name__ == "__main__":
    sys.exit(main())
