"""Run the demo API in a separate process (no GIL contention with the client reading it).

`DemoProcess` starts `python -m flows.demo serve ... --port 0`, reads the machine-readable
`DEMO_API_URL=...` line, waits for `/api/_demo/health`, and stops the process on exit.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from typing import IO

import httpx

from flows.demo.__main__ import URL_PREFIX


class DemoProcessError(RuntimeError):
    """The demo API process did not come up (its output is in the message)."""


class DemoProcess:
    def __init__(
        self,
        preset: str = "small",
        scale: int = 1,
        seed: int = 42,
        port: int = 0,
        id_type: str = "int",
        extra_args: Sequence[str] = (),
        startup_timeout: float = 300.0,
    ) -> None:
        self.preset = preset
        self.scale = scale
        self.seed = seed
        self.port = port
        self.id_type = id_type
        self.extra_args = tuple(extra_args)
        self.startup_timeout = startup_timeout
        self.url = ""
        self._process: subprocess.Popen[str] | None = None
        self._output: list[str] = []
        self._reader: threading.Thread | None = None

    def start(self) -> DemoProcess:
        command = [
            sys.executable,
            "-m",
            "flows.demo",
            "serve",
            "--preset",
            self.preset,
            "--scale",
            str(self.scale),
            "--seed",
            str(self.seed),
            "--port",
            str(self.port),
            "--id-type",
            self.id_type,
            *self.extra_args,
        ]
        self._process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
        found = threading.Event()
        assert self._process.stdout is not None
        self._reader = threading.Thread(
            target=self._drain, args=(self._process.stdout, found), daemon=True
        )
        self._reader.start()
        deadline = time.monotonic() + self.startup_timeout
        while not found.wait(0.1):
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                output = "".join(self._output)[-4000:]
                raise DemoProcessError(f"demo API did not start:\n{output}")
        self._wait_healthy(deadline)
        return self

    def _drain(self, stream: IO[str], found: threading.Event) -> None:
        # Keep reading so the pipe never fills (with --verbose the server logs every request).
        for line in stream:
            if len(self._output) < 1000:
                self._output.append(line)
            if line.startswith(URL_PREFIX) and not found.is_set():
                self.url = line[len(URL_PREFIX) :].strip()
                found.set()

    def _wait_healthy(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/api/_demo/health", timeout=2.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.stop()
        raise DemoProcessError(f"demo API at {self.url} never became healthy")

    @property
    def output(self) -> str:
        return "".join(self._output)

    def stop(self, timeout: float = 10.0) -> int | None:
        process, self._process = self._process, None
        if process is None:
            return None
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=timeout)
        if self._reader is not None:
            self._reader.join(timeout=2)
        return process.returncode

    def __enter__(self) -> DemoProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
