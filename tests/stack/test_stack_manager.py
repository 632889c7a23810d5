"""The stack manager's promises: clear errors before anything starts (taken port, no Java >= 24,
failed download), process groups stopped whole, idempotent `up`, nothing left after `down`."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from deployments.stack import install
from deployments.stack.__main__ import main, up
from deployments.stack.config import StackConfig
from deployments.stack.install import StackError, find_java, maven_artifact
from deployments.stack.processes import ManagedProcess, process_start_time


def test_a_taken_port_is_a_clear_error_and_starts_nothing(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = StackConfig(dir=tmp_path, cache_dir=tmp_path / "cache", catalog_port=port)
        with pytest.raises(StackError, match=rf"port {port} .* STACK_CATALOG_PORT=<port>"):
            up(config)
    assert not (tmp_path / "run").exists()  # no process was started
    assert not (tmp_path / "cache").exists()  # nothing was downloaded


def test_no_java_24_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(install, "KNOWN_JDKS", ())
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # Debian's java here is 17
    config = StackConfig(dir=tmp_path, java_home=tmp_path / "no-jdk")
    with pytest.raises(StackError, match=r"needs Java >= 24.*STACK_JAVA_HOME"):
        find_java(config)


def test_a_failed_download_is_a_clear_error(tmp_path: Path) -> None:
    config = StackConfig(dir=tmp_path, cache_dir=tmp_path / "cache")
    with pytest.raises(StackError, match=r"could not download io\.trino:trino-no-such-artifact"):
        maven_artifact(config, "io.trino:trino-no-such-artifact:1:jar", "nothing.jar")
    assert not (tmp_path / "cache" / "nothing.jar").exists()


def test_a_process_group_is_stopped_whole(tmp_path: Path) -> None:
    process = ManagedProcess("sleeper", tmp_path / "run", tmp_path / "logs")
    # A parent with a child of its own: both must go.
    pid = process.start(
        [
            sys.executable,
            "-c",
            "import subprocess, time; subprocess.Popen(['sleep', '300']); "
            "print('started', flush=True); time.sleep(300)",
        ],
        env={"PATH": "/usr/bin:/bin"},
        cwd=tmp_path,
    )
    deadline = time.monotonic() + 10
    while "started" not in process.log_file.read_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    children = subprocess.run(
        ["pgrep", "-g", str(pid)], capture_output=True, text=True, check=False
    ).stdout.split()
    assert len(children) == 2
    assert process.pid() == pid
    assert process.stop(timeout=5)
    assert all(process_start_time(int(child)) is None for child in children)
    assert process.pid() is None and not process.pid_file.exists()
    assert not process.stop()  # a second stop is a no-op


@pytest.mark.slow
@pytest.mark.stack
def test_up_on_a_healthy_stack_changes_nothing(
    live_stack: StackConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    pids = {
        name: ManagedProcess(name, live_stack.run, live_stack.logs).pid()
        for name in ("s3", "catalog", "trino", "prefect")
    }
    assert all(pids.values())
    assert up(live_stack) == {}  # nothing started, nothing waited for
    assert pids == {
        name: ManagedProcess(name, live_stack.run, live_stack.logs).pid() for name in pids
    }
    env = live_stack.env_file.read_text()
    assert f"TRINO_PORT={live_stack.trino_port}" in env and "DBT_TARGET=trino" in env
    trino_client = live_stack.dir / "bin" / "trino"
    query = subprocess.run(
        [str(trino_client), "--execute", "select 1 + 1"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert query.stdout.strip() == '"2"', query.stderr


def test_status_of_a_stack_that_is_not_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ports = []
    for _ in range(5):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            ports.append(sock.getsockname()[1])
    for variable, port in zip(
        ("S3", "CATALOG", "TRINO", "POSTGRES", "PREFECT"), ports, strict=True
    ):
        monkeypatch.setenv(f"STACK_{variable}_PORT", str(port))
    monkeypatch.setenv("STACK_DIR", str(tmp_path))
    assert main(["status"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[1] for line in lines] == ["down"] * 5
    assert main(["down"]) == 0
    assert "stopped nothing" in capsys.readouterr().out
