"""Background processes the stack starts and stops: one process group each, a pid file that
also records the process's start time (so a recycled pid is never taken for ours), logs in
`.stack/logs/<name>.log`."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from deployments.stack.install import StackError


def process_start_time(pid: int) -> str | None:
    """Field 22 of /proc/<pid>/stat (start time in clock ticks); None when no such process is
    alive (a zombie, exited but not yet reaped by its parent, counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] in {"Z", "X"} else fields[19]


class ManagedProcess:
    """A named background process with its pid file and log."""

    def __init__(self, name: str, run_dir: Path, logs_dir: Path) -> None:
        self.name = name
        self.pid_file = run_dir / f"{name}.pid"
        self.log_file = logs_dir / f"{name}.log"

    def pid(self) -> int | None:
        """Our process's pid while it runs, else None (a stale pid file is removed)."""
        try:
            recorded = json.loads(self.pid_file.read_text())
        except (OSError, ValueError):
            return None
        pid = int(recorded["pid"])
        if process_start_time(pid) == recorded["start_time"]:
            return pid
        self.pid_file.unlink(missing_ok=True)
        return None

    def start(self, command: Sequence[str], env: dict[str, str], cwd: Path) -> int:
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log:
            log.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} start\n".encode())
            log.flush()
            process = subprocess.Popen(
                list(command),
                env=env,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stopped as one
            )
        start_time = process_start_time(process.pid) or ""
        self.pid_file.write_text(json.dumps({"pid": process.pid, "start_time": start_time}))
        return process.pid

    def stop(self, timeout: float = 30) -> bool:
        """SIGTERM the process group, SIGKILL it after `timeout`; True if it was running."""
        pid = self.pid()
        if pid is None:
            return False
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10.0)):
            try:
                os.killpg(pid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline and process_start_time(pid) is not None:
                _reap(pid)
                time.sleep(0.2)
            if process_start_time(pid) is None:
                break
        self.pid_file.unlink(missing_ok=True)
        return True

    def log_tail(self, lines: int = 25) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):  # not our child: init reaps it
        os.waitpid(pid, os.WNOHANG)


def port_open(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def require_free_port(host: str, port: int, what: str, variable: str) -> None:
    if port_open(host, port):
        raise StackError(
            f"port {port} on {host} is already taken by another process, so {what} cannot "
            f"start there: stop that process or choose another port with {variable}=<port>"
        )


def wait_until(
    check: Callable[[], bool],
    *,
    what: str,
    timeout: float,
    process: ManagedProcess | None = None,
    interval: float = 1.0,
) -> float:
    """Poll `check` until it is true; fail with the process's log tail when it dies or times
    out. Returns the seconds waited."""
    started = time.monotonic()
    while True:
        try:
            if check():
                return time.monotonic() - started
        except Exception:  # noqa: S110  # not up yet: any error means "poll again"
            pass
        if process is not None and process.pid() is None:
            raise StackError(
                f"{what} exited while starting; last lines of {process.log_file}:\n"
                + process.log_tail()
            )
        if time.monotonic() - started > timeout:
            where = f"; last lines of {process.log_file}:\n{process.log_tail()}" if process else ""
            raise StackError(f"{what} was not healthy after {timeout:.0f} s{where}")
        time.sleep(interval)
