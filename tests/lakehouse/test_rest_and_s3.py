"""REST catalog (OAuth2 client credentials) and S3 warehouse, exercised for real.

REST: no Lakekeeper can run here, so `MiniRestCatalog` is a small HTTP server implementing the
Iceberg REST endpoints our loader uses (config, OAuth2 token, create namespace, load/create
table, commit table) on top of a pyiceberg SqlCatalog, and recording every request. It proves
that our settings produce a working pyiceberg REST configuration, that the client-credentials
token is requested with id/secret/scope and then sent as a bearer on every catalog call, and
that a whole load (create, single-commit upsert, cursor) works through the REST protocol. It does
not prove compatibility with a particular server's quirks (Lakekeeper's warehouse ids, vended
credentials, token refresh timing).

S3: a local moto server; the warehouse is `s3://bucket/...` with our S3_* settings.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.exceptions import (
    CommitFailedException,
    NamespaceAlreadyExistsError,
    NoSuchTableError,
)
from pyiceberg.partitioning import PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.table import CommitTableRequest

from flows.demo.server import DemoServer
from flows.lakehouse.catalog import catalog_properties, clear_catalog_cache
from flows.lakehouse.errors import CatalogError
from flows.lakehouse.load import LoadMode, load_collection, prepare_lakehouse, table_state
from flows.settings import load_settings

from .conftest import assert_table_equals_source, settings_for

pytestmark = pytest.mark.slow


class MiniRestCatalog:
    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.backing = SqlCatalog(
            "backing", uri=f"sqlite:///{root / 'rest.db'}", warehouse=(root / "wh").as_uri()
        )
        (root / "wh").mkdir(parents=True, exist_ok=True)
        self.token_requests: list[dict[str, list[str]]] = []
        self.calls: list[tuple[str, str, str | None]] = []  # method, path, Authorization
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _do(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                status, payload = outer.handle(method, self.path, dict(self.headers), body)
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._do("GET")

            def do_POST(self) -> None:
                self._do("POST")

            def do_HEAD(self) -> None:
                self._do("HEAD")

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    @staticmethod
    def error(code: int, kind: str, message: str) -> tuple[int, dict]:
        return code, {"error": {"message": message, "type": kind, "code": code}}

    def handle(self, method: str, raw_path: str, headers: dict, body: bytes) -> tuple[int, Any]:
        path = urlsplit(raw_path).path
        if path == "/oauth/token":
            form = parse_qs(body.decode())
            self.token_requests.append(form)
            if form.get("client_secret") != ["s3cret"]:
                return 401, {"error": "invalid_client"}
            return 200, {"access_token": "issued-token", "token_type": "bearer", "expires_in": 3600}
        auth = headers.get("Authorization")
        self.calls.append((method, path, auth))
        if auth != "Bearer issued-token":
            return self.error(401, "NotAuthorizedException", "missing or bad token")
        parts = [unquote(p) for p in path.split("/") if p]
        if parts == ["v1", "config"]:
            return 200, {"defaults": {}, "overrides": {}}
        if parts == ["v1", "namespaces"] and method == "POST":
            namespace = tuple(json.loads(body)["namespace"])
            try:
                self.backing.create_namespace(namespace)
            except NamespaceAlreadyExistsError:
                return self.error(409, "AlreadyExistsException", "namespace exists")
            return 200, {"namespace": list(namespace), "properties": {}}
        if len(parts) == 4 and parts[3] == "tables" and method == "POST":
            request = json.loads(body)
            table = self.backing.create_table(
                (parts[2], request["name"]),
                schema=Schema.model_validate(request["schema"]),
                partition_spec=PartitionSpec(),
                properties=request.get("properties", {}),
            )
            return 200, self.table_response(table)
        if len(parts) == 5 and parts[3] == "tables":
            identifier = (parts[2], parts[4])
            try:
                table = self.backing.load_table(identifier)
            except NoSuchTableError:
                return self.error(404, "NoSuchTableException", "no such table")
            if method == "GET":
                return 200, self.table_response(table)
            if method == "POST":
                request = CommitTableRequest.model_validate_json(body)
                try:
                    response = self.backing.commit_table(
                        table, request.requirements, request.updates
                    )
                except CommitFailedException as exc:
                    return self.error(409, "CommitFailedException", str(exc))
                return 200, json.loads(response.model_dump_json(by_alias=True))
        return self.error(404, "NotFoundException", f"not implemented: {method} {path}")

    @staticmethod
    def table_response(table: Any) -> dict:
        return {
            "metadata-location": table.metadata_location,
            "metadata": json.loads(table.metadata.model_dump_json(by_alias=True)),
            "config": {},
        }


@pytest.fixture
def rest_catalog(tmp_path: Path) -> Iterator[MiniRestCatalog]:
    clear_catalog_cache()
    catalog = MiniRestCatalog(tmp_path / "rest")
    yield catalog
    catalog.close()
    clear_catalog_cache()


def test_rest_catalog_with_oauth2_client_credentials(
    rest_catalog: MiniRestCatalog, make_demo_server: Callable[..., DemoServer], tmp_path: Path
) -> None:
    server = make_demo_server()
    settings = settings_for(
        server,
        tmp_path / "unused",
        iceberg_catalog_type="rest",
        iceberg_catalog_url=rest_catalog.url,
        iceberg_warehouse="demo",
        oidc_client_id="pipeline",
        oidc_client_secret="s3cret",
        oidc_token_url=f"{rest_catalog.url}/oauth/token",
        oidc_scope="lakekeeper",
    )
    props = catalog_properties(settings)
    assert props["credential"] == "pipeline:s3cret" and props["scope"] == "lakekeeper"

    prepare_lakehouse(settings)
    assert table_state(settings, "categories") == "empty"
    first = load_collection(settings, "categories")
    assert first.committed and first.inserted == server.store.count("categories")
    assert not load_collection(settings, "categories").committed
    assert_table_equals_source(settings, server, "categories", computed_too=True)
    assert load_collection(settings, "categories", LoadMode.FULL_REFRESH).committed

    token = rest_catalog.token_requests[0]
    assert token["grant_type"] == ["client_credentials"]
    assert token["client_id"] == ["pipeline"] and token["scope"] == ["lakekeeper"]
    paths = [(m, p) for m, p, _ in rest_catalog.calls]
    assert ("GET", "/v1/config") in paths
    assert ("POST", "/v1/namespaces") in paths
    assert ("POST", "/v1/namespaces/ecommerce/tables") in paths
    assert ("POST", "/v1/namespaces/ecommerce/tables/categories") in paths  # the commits
    assert all(auth == "Bearer issued-token" for _, _, auth in rest_catalog.calls)


def test_rest_catalog_bad_credentials_is_a_catalog_error(
    rest_catalog: MiniRestCatalog, tmp_path: Path
) -> None:
    settings = load_settings(
        iceberg_catalog_type="rest",
        iceberg_catalog_url=rest_catalog.url,
        oidc_client_id="pipeline",
        oidc_client_secret="wrong-secret",
        oidc_token_url=f"{rest_catalog.url}/oauth/token",
        lakehouse_dir=tmp_path,
    )
    with pytest.raises(CatalogError) as error:
        prepare_lakehouse(settings)
    assert "wrong-secret" not in str(error.value)
    assert "OIDC" in str(error.value)


def test_unreachable_catalog_is_a_clear_error(tmp_path: Path) -> None:
    clear_catalog_cache()
    settings = load_settings(
        iceberg_catalog_type="rest",
        iceberg_catalog_url="http://127.0.0.1:9",
        lakehouse_dir=tmp_path,
    )
    with pytest.raises(CatalogError, match=r"REST catalog at http://127\.0\.0\.1:9"):
        prepare_lakehouse(settings)


def test_s3_warehouse_on_moto(make_demo_server: Callable[..., DemoServer], tmp_path: Path) -> None:
    boto3 = pytest.importorskip("boto3")
    moto_server = pytest.importorskip("moto.server")
    s3 = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    s3.start()
    try:
        host, port = s3.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id="k",
            aws_secret_access_key="s",
            region_name="us-east-1",
        ).create_bucket(Bucket="lake")
        clear_catalog_cache()
        server = make_demo_server()
        settings = settings_for(
            server,
            tmp_path / "lh",
            iceberg_warehouse="s3://lake/warehouse",
            s3_endpoint=endpoint,
            s3_access_key_id="k",
            s3_secret_access_key="s",
            s3_region="us-east-1",
        )
        prepare_lakehouse(settings)
        assert load_collection(settings, "products").committed
        apply = __import__("flows.demo.changes", fromlist=["apply_change_batch"])
        apply.apply_change_batch(server.store, seed=2, fraction=0.05)
        load_collection(settings, "products", LoadMode.RECONCILE)
        assert_table_equals_source(settings, server, "products")
        keys = [
            o["Key"]
            for o in boto3.client(
                "s3",
                endpoint_url=endpoint,
                aws_access_key_id="k",
                aws_secret_access_key="s",
                region_name="us-east-1",
            ).list_objects_v2(Bucket="lake")["Contents"]
        ]
        assert any(k.endswith(".parquet") for k in keys)
        assert any(k.endswith(".metadata.json") for k in keys)
    finally:
        s3.stop()
        clear_catalog_cache()


def test_a_lost_namespace_creation_race_is_not_an_error(tmp_path: Path) -> None:
    """Two first runs on one fresh SQLite catalog: the loser of the namespace insert gets an
    IntegrityError although the namespace now exists (seen in reliability scenario 9). The
    race itself is a few milliseconds wide, so the losing call is played back here."""
    from sqlalchemy.exc import IntegrityError

    from flows.lakehouse.catalog import ensure_namespace, get_catalog
    from flows.settings import load_settings

    catalog = get_catalog(load_settings(lakehouse_dir=tmp_path))
    catalog.create_namespace("ecommerce")  # the winner

    class Loser:
        def create_namespace_if_not_exists(self, namespace: str) -> None:
            raise IntegrityError("insert into iceberg_namespace_properties", {}, Exception())

        def list_namespaces(self) -> list[tuple[str, ...]]:
            return catalog.list_namespaces()

    ensure_namespace(Loser(), "ecommerce")  # type: ignore[arg-type]
    with pytest.raises(IntegrityError):  # a namespace that really is missing still fails
        ensure_namespace(Loser(), "ecommerce_marts")  # type: ignore[arg-type]
