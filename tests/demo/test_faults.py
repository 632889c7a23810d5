"""Fault injection does what it claims: each kind on the wire, determinism, filters, bounds."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import orjson
import pytest

from flows.demo.faults import FaultInjector, FaultPlan, FaultRule, truncated
from flows.demo.server import DemoServer

PATHS = [f"/api/orders?page={n}" for n in range(1, 6)]


def decisions(plan: FaultPlan, count: int = 400) -> list[str | None]:
    injector = FaultInjector()
    injector.set_plan(plan)
    out = []
    for n in range(count):
        fault = injector.decide(PATHS[n % len(PATHS)], "orders")
        out.append(fault.kind if fault else None)
    return out


def test_spec_parsing() -> None:
    plan = FaultPlan.parse(
        "503:0.1x3,429:0.05@2,latency:0.1@2.5,reset:0.02:first=50,"
        "truncate:0.05:collection=orders,max=20,seed=7"
    )
    assert plan.seed == 7 and plan.max_faults == 20
    assert plan.rules == (
        FaultRule("503", 0.1, burst=3),
        FaultRule("429", 0.05, retry_after=2),
        FaultRule("latency", 0.1, delay=2.5),
        FaultRule("reset", 0.02, first=50),
        FaultRule("truncate", 0.05, collection="orders"),
    )
    assert FaultPlan.from_json(plan.to_json()) == plan
    for bad in ("teapot:0.1", "503:2", "503", "500:0.1:colour=red"):
        with pytest.raises(ValueError, match="fault"):
            FaultPlan.parse(bad)


def test_same_seed_same_faults_other_seed_other_faults() -> None:
    rules = (FaultRule("503", 0.1), FaultRule("429", 0.1), FaultRule("reset", 0.05))
    first = decisions(FaultPlan(rules, seed=1))
    assert first == decisions(FaultPlan(rules, seed=1))
    assert first != decisions(FaultPlan(rules, seed=2))
    rate = sum(kind is not None for kind in first) / len(first)
    assert 0.15 < rate < 0.35  # ~ 0.1 + 0.9*0.1 + 0.81*0.05 = 0.23


def test_bounds_and_filters() -> None:
    capped = decisions(FaultPlan((FaultRule("500", 0.5),), seed=3, max_faults=7))
    assert sum(kind is not None for kind in capped) == 7
    first_only = decisions(FaultPlan((FaultRule("500", 1.0, first=10),), seed=3))
    assert first_only[:10] == ["500"] * 10 and set(first_only[10:]) == {None}
    injector = FaultInjector()
    injector.set_plan(FaultPlan((FaultRule("503", 1.0, collection="carts"),)))
    assert injector.decide("/api/orders", "orders") is None
    fault = injector.decide("/api/carts", "carts")
    assert fault is not None and fault.kind == "503"


def test_bursts_are_consecutive() -> None:
    kinds = decisions(FaultPlan((FaultRule("503", 0.02, burst=4),), seed=11), count=2000)
    runs: list[int] = []
    length = 0
    for kind in [*kinds, None]:
        if kind == "503":
            length += 1
        elif length:
            runs.append(length)
            length = 0
    assert runs and all(run % 4 == 0 for run in runs)  # back-to-back bursts merge


def test_truncated_body_is_never_valid_json() -> None:
    for body in (b"{}", b'{"docs":[]}', orjson.dumps({"docs": [{"id": 1}], "a": "}"})):
        cut = truncated(body)
        assert 0 < len(cut) < len(body) and body.startswith(cut)
        with pytest.raises(orjson.JSONDecodeError):
            orjson.loads(cut)


@pytest.fixture
def server(make_demo_server: Callable[..., DemoServer]) -> DemoServer:
    return make_demo_server()


def arm(server: DemoServer, spec: str) -> None:
    """Set faults through the admin endpoint, the way a test of a client would."""
    response = httpx.post(
        f"{server.url}/api/_demo/faults",
        json={"spec": spec},
        headers={"Authorization": f"JWT {server.admin_token()}"},
    )
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    ("kind", "body_start"),
    [("500", b'{"errors"'), ("502", b"<html>"), ("503", b"<html>")],
)
def test_error_statuses(server: DemoServer, kind: str, body_start: bytes) -> None:
    arm(server, f"{kind}:1.0x2,max=2")
    url = f"{server.url}/api/products?limit=1"
    with httpx.Client() as client:
        for _ in range(2):
            response = client.get(url)
            assert response.status_code == int(kind)
            assert response.content.startswith(body_start)
        assert client.get(url).status_code == 200  # bounded by max


def test_429_carries_retry_after(server: DemoServer) -> None:
    arm(server, "429:1.0@3,max=1")
    response = httpx.get(f"{server.url}/api/products")
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "3"
    assert httpx.get(f"{server.url}/api/products").status_code == 200


def test_latency_trips_client_timeouts(server: DemoServer) -> None:
    arm(server, "latency:1.0@1.5,max=1")
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(f"{server.url}/api/categories", timeout=0.3)
    assert httpx.get(f"{server.url}/api/categories", timeout=5).status_code == 200


def test_reset_closes_without_a_response(server: DemoServer) -> None:
    arm(server, "reset:1.0,max=1")
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{server.url}/api/categories")
    assert httpx.get(f"{server.url}/api/categories").status_code == 200


def test_cut_stops_mid_body(server: DemoServer) -> None:
    arm(server, "cut:1.0,max=1")
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.get(f"{server.url}/api/products?limit=20&depth=0")
    assert httpx.get(f"{server.url}/api/products?limit=20&depth=0").status_code == 200


def test_truncate_sends_a_complete_message_with_invalid_json(server: DemoServer) -> None:
    arm(server, "truncate:1.0,max=1")
    url = f"{server.url}/api/products?limit=20&depth=0"
    broken = httpx.get(url)
    assert broken.status_code == 200
    assert int(broken.headers["Content-Length"]) == len(broken.content)
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(broken.content)
    whole = httpx.get(url)
    assert whole.content.startswith(broken.content) and len(whole.content) > len(broken.content)


def test_collection_filter_and_stats(server: DemoServer) -> None:
    arm(server, "503:1.0:collection=carts")
    token = server.admin_token()
    headers = {"Authorization": f"JWT {token}"}
    assert httpx.get(f"{server.url}/api/carts", headers=headers).status_code == 503
    assert httpx.get(f"{server.url}/api/orders", headers=headers).status_code == 200
    # Admin endpoints are never faulted, so faults can always be switched off.
    stats = httpx.get(f"{server.url}/api/_demo/stats", headers=headers).json()
    assert stats["faults"]["injected"] == 1 and stats["faults"]["by_kind"] == {"503": 1}
    arm(server, "")
    assert httpx.get(f"{server.url}/api/carts", headers=headers).status_code == 200


def test_faults_configured_at_construction_are_reproducible(
    make_demo_server: Callable[..., DemoServer],
) -> None:
    def run() -> list[int]:
        server = make_demo_server(faults="500:0.3,503:0.2", seed=5)
        with httpx.Client() as client:
            return [
                client.get(f"{server.url}/api/categories?page={n}").status_code for n in range(30)
            ]

    first = run()
    assert first == run()
    assert {500, 503, 200} <= set(first)
