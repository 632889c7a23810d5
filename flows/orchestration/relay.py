"""Tell a self-hosted Prefect server that something changed in Payload.

Prefect Cloud receives Payload's afterChange hook through a webhook; a self-hosted Prefect server
has no webhooks. This relay fills the gap: it emits the same `payload.collection.changed` event
(with `prefect.events.emit_event`) that the `on-change` deployment triggers on.

    # long-running HTTP endpoint for Payload's hook (deployments/payload-hook/afterChange.ts)
    python -m flows.orchestration.relay serve --host 127.0.0.1 --port 8787
    # one-shot, e.g. from a shell or `make change COLLECTION=orders`
    python -m flows.orchestration.relay emit orders --operation update --id 42

Both need PREFECT_API_URL (the server that runs the deployments). The endpoint accepts
`POST /payload/changed` with a JSON body `{"collection": "orders", "operation": "update",
"id": 42}`; when PAYLOAD_RELAY_TOKEN is set, requests must send it in `X-Relay-Token`.
"""

from __future__ import annotations

import argparse
import hmac
import json
import os
import sys
from collections.abc import Sequence
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prefect.events.worker import EventsWorker
from prefect.settings import PREFECT_API_URL

from flows.orchestration.events import emit_collection_changed
from flows.settings import ALL_COLLECTIONS

CHANGE_PATH = "/payload/changed"
TOKEN_VARIABLE = "PAYLOAD_RELAY_TOKEN"  # noqa: S105 (the variable's name, not a secret)
MAX_BODY_BYTES = 64 * 1024
OPERATIONS = ("create", "update", "delete")


class ChangeError(ValueError):
    """The change notification is malformed; the message says what is expected."""


def change_details(body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Validate a notification and return (collection, event payload)."""
    collection = body.get("collection")
    if collection not in ALL_COLLECTIONS:
        raise ChangeError(f"'collection' must be one of {', '.join(ALL_COLLECTIONS)}")
    operation = body.get("operation", "update")
    if operation not in OPERATIONS:
        raise ChangeError(f"'operation' must be one of {', '.join(OPERATIONS)}")
    details: dict[str, Any] = {"operation": operation}
    if body.get("id") is not None:
        details["id"] = str(body["id"])
    return str(collection), details


class RelayHandler(BaseHTTPRequestHandler):
    server_version = "payload-lakehouse-relay"
    expected_token: str | None = None

    def do_POST(self) -> None:
        if self.path != CHANGE_PATH:
            self._reply(HTTPStatus.NOT_FOUND, {"error": f"POST {CHANGE_PATH}"})
            return
        token = self.headers.get("X-Relay-Token", "")
        if self.expected_token and not hmac.compare_digest(token, self.expected_token):
            self._reply(HTTPStatus.UNAUTHORIZED, {"error": "missing or wrong X-Relay-Token"})
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length <= 0 or length > MAX_BODY_BYTES:
            self._reply(HTTPStatus.BAD_REQUEST, {"error": "a JSON body up to 64 KiB is required"})
            return
        try:
            body = json.loads(self.rfile.read(length))
            if not isinstance(body, dict):
                raise ChangeError("the body must be a JSON object")
            collection, details = change_details(body)
        except (ChangeError, json.JSONDecodeError) as error:
            self._reply(HTTPStatus.BAD_REQUEST, {"error": str(error)})
            return
        emit_collection_changed(collection, details)
        self._reply(HTTPStatus.ACCEPTED, {"emitted": "payload.collection.changed", **details})

    def do_GET(self) -> None:
        if self.path == "/health":
            self._reply(HTTPStatus.OK, {"status": "ok"})
        else:
            self._reply(HTTPStatus.NOT_FOUND, {"error": "GET /health"})

    def _reply(self, status: HTTPStatus, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        sys.stderr.write(f"relay: {self.address_string()} {format % args}\n")


def make_server(host: str, port: int, token: str | None) -> ThreadingHTTPServer:
    handler = type("ConfiguredRelayHandler", (RelayHandler,), {"expected_token": token})
    return ThreadingHTTPServer((host, port), handler)


def _require_api_url() -> str | None:
    url = PREFECT_API_URL.value()
    if not url:
        print(
            "PREFECT_API_URL is not set: point it at the Prefect server that runs the "
            "deployments, e.g. PREFECT_API_URL=http://127.0.0.1:4200/api",
            file=sys.stderr,
        )
    return url


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m flows.orchestration.relay",
        description="Emit payload.collection.changed events to a self-hosted Prefect server.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="HTTP endpoint for Payload's afterChange hook")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8787)
    emit = commands.add_parser("emit", help="emit one change event and exit")
    emit.add_argument("collection", choices=ALL_COLLECTIONS)
    emit.add_argument("--operation", choices=OPERATIONS, default="update")
    emit.add_argument("--id", default=None, help="the changed document's id")
    args = parser.parse_args(argv)

    if not _require_api_url():
        return 2
    if args.command == "emit":
        collection, details = change_details(
            {"collection": args.collection, "operation": args.operation, "id": args.id}
        )
        emit_collection_changed(collection, details)
        EventsWorker.drain_all(timeout=30)  # send before the process exits
        print(f"emitted payload.collection.changed for {collection} ({details})")
        return 0

    server = make_server(args.host, args.port, os.environ.get(TOKEN_VARIABLE) or None)
    print(f"relay listening on http://{args.host}:{server.server_port}{CHANGE_PATH}")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        EventsWorker.drain_all(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
