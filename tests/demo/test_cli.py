"""`python -m flows.demo serve` starts, prints a machine-readable URL, serves, exits cleanly."""

from __future__ import annotations

import signal
import subprocess
import sys

import httpx
import pytest

from flows.demo.process import DemoProcess


@pytest.mark.slow
def test_serve_prints_url_and_stops_cleanly_on_sigterm() -> None:
    process = DemoProcess(
        preset="small", seed=7, extra_args=("--api-key", "cli-key", "--faults", "500:0.0")
    )
    process.start()
    try:
        assert process.url.startswith("http://127.0.0.1:")
        output = process.output
        assert "admin@example.com" in output and "/api/users/login" in output
        assert "eyJ" not in output  # never prints a token
        login = httpx.post(
            f"{process.url}/api/users/login",
            json={"email": "admin@example.com", "password": "demo-password"},
        )
        assert login.status_code == 200
        orders = httpx.get(
            f"{process.url}/api/orders?limit=1&depth=0",
            headers={"Authorization": "users API-Key cli-key"},
        )
        assert orders.status_code == 200 and orders.json()["totalDocs"] > 0
        url = process.url
    finally:
        returncode = process.stop()
    assert returncode == 0  # SIGTERM is a clean shutdown
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{url}/api/products", timeout=2)


@pytest.mark.slow
def test_sigint_exits_zero() -> None:
    child = subprocess.Popen(
        [sys.executable, "-m", "flows.demo", "serve", "--preset", "small", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        first = child.stdout.readline()
        assert first.startswith("DEMO_API_URL=http://")
        assert httpx.get(f"{first.split('=', 1)[1].strip()}/api/categories").status_code == 200
        child.send_signal(signal.SIGINT)
        assert child.wait(timeout=20) == 0
        assert "Demo API stopped." in child.stdout.read()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_bad_fault_spec_is_rejected_before_serving() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "flows.demo", "serve", "--port", "0", "--faults", "teapot:1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "teapot" in result.stderr
