"""A real browser for the tests: Debian's chromium, driven headless by Playwright.

`ensure_chromium()` installs the `chromium` package with apt-get when it is missing (the tests
set up what they need, as `make test` promises); Playwright's own browser download is never used.
Screenshots are test output, kept in `.test-output/screenshots/` at the repository root.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
SCREENSHOTS = REPO_ROOT / ".test-output" / "screenshots"
CHROMIUM_CANDIDATES = ("chromium", "chromium-browser")


def ensure_chromium() -> str:
    """The path of a chromium executable, installing Debian's package if there is none."""
    for name in CHROMIUM_CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    if os.geteuid() != 0:
        raise RuntimeError(
            "the browser tests need Debian's chromium: run `sudo apt-get install -y chromium`"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", "chromium"]
    if subprocess.run(install, env=env, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, capture_output=True, check=True)
        result = subprocess.run(install, env=env, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"apt-get install chromium failed: {result.stderr[-800:]}")
    found = shutil.which("chromium")
    if found is None:
        raise RuntimeError("apt-get installed chromium but no `chromium` is on PATH")
    return found


@dataclass
class PageErrors:
    """Console errors and uncaught exceptions a page produced."""

    console: list[str] = field(default_factory=list)
    uncaught: list[str] = field(default_factory=list)

    def watch(self, page: Any) -> Any:
        page.on("console", lambda m: self.console.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda error: self.uncaught.append(str(error)))
        return page

    @property
    def all(self) -> list[str]:
        return self.console + self.uncaught


def screenshot(page: Any, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
