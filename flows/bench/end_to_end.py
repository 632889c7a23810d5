"""Benchmark: the whole pipeline as a user runs it, `python flows/main.py`, end to end.

Every run is a fresh subprocess with a fresh temporary LAKEHOUSE_DIR and PREFECT_HOME, no
PREFECT_API_URL (Prefect's ephemeral mode: it starts its own temporary server) and no
PAYLOAD_CMS_URL (the command line starts the demo Payload API in its own process). Measured:

- `end_to_end`: `python flows/main.py --preset large` (extract + load + dbt build + publish), wall
  time from the command to its exit, split at the lines the command prints: the demo API is up
  ("Source: ..."), the parent flow run begins (Prefect's ephemeral server is up), the flow
  finished ("Done."); `pipeline_s` is the flow run's own time, `docs_per_s` is over it;
- `growth`: `python flows/main.py --preset P --skip-dbt` for small -> large -> large x10
  (DEMO_SCALE=10): seconds, documents, documents/s and peak memory, with the ratios between
  consecutive rows (how time and memory grow with the data);
- peak memory: each process's own high-water mark (`VmHWM` in /proc/<pid>/status, kept by the
  kernel, so no sampling gap), sampled every 0.1 s for every process of the tree: the flow process
  (the loader), the demo API, Prefect's ephemeral server; and the largest sum of their current
  RSS. The loader's figure is the one compared with extract/load's 1.5 GB target at x10.

Imports are compiled once before timing (a warm-up `import flows.main`), as they would be on any
machine that ran the pipeline before. Figures depend on the machine: they are reported as
measured, with ratios taken within the same run.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flows.settings import REPO_ROOT

MAIN = REPO_ROOT / "flows" / "main.py"
PEAK_MEMORY_TARGET_MB = 1536.0  # issue 3: extract + load at --scale 10
SAMPLE_INTERVAL_S = 0.1
# Prefect's console line when the parent flow run starts (after its ephemeral server is up).
FLOW_RUN_BEGINS = "for flow 'payload-lakehouse'"
RUN_TIMEOUT_S = 3600.0

# Environment a user's shell may carry that would change what is measured.
_CLEARED = (
    "PREFECT_API_URL",
    "PREFECT_API_KEY",
    "PREFECT_PROFILE",
    "PAYLOAD_CMS_URL",
    "PAYLOAD_CMS_TOKEN",
    "PAYLOAD_API_KEY",
    "PAYLOAD_EMAIL",
    "PAYLOAD_PASSWORD",
    "PAYLOAD_COLLECTIONS",
    "LAKEHOUSE_DIR",
    "ICEBERG_CATALOG_TYPE",
    "ICEBERG_CATALOG_URL",
    "ICEBERG_WAREHOUSE",
    "DEMO_PRESET",
    "DEMO_SCALE",
    "DBT_TARGET",
    "PYTHONDONTWRITEBYTECODE",
)


# --- process-tree memory -------------------------------------------------------------------


def _children_by_parent() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # the command name (field 2) may contain spaces: the ppid follows its closing paren
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        tree.setdefault(ppid, []).append(int(entry))
    return tree


def _descendants(root: int) -> list[int]:
    tree = _children_by_parent()
    found, stack = [root], [root]
    while stack:
        for child in tree.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def _memory_kb(pid: int) -> tuple[int, int] | None:
    """(VmRSS, VmHWM) in kB, or None once the process is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    values = dict(re.findall(r"^(VmRSS|VmHWM):\s+(\d+) kB", status, re.MULTILINE))
    if "VmHWM" not in values:
        return None
    return int(values.get("VmRSS", 0)), int(values["VmHWM"])


def _role(pid: int, root: int) -> str:
    if pid == root:
        return "flow"
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return "other"
    if "flows.demo" in command:
        return "demo_api"
    if "prefect" in command or "uvicorn" in command:
        return "prefect_server"
    return "other"


@dataclass
class TreeMemory:
    """Samples a process tree until stopped; keeps each process's high-water mark."""

    root: int
    peak_by_pid: dict[int, int] = field(default_factory=dict)
    role_by_pid: dict[int, str] = field(default_factory=dict)
    peak_tree_kb: int = 0
    samples: int = 0

    def sample(self) -> None:
        total = 0
        for pid in _descendants(self.root):
            memory = _memory_kb(pid)
            if memory is None:
                continue
            rss, hwm = memory
            total += rss
            self.peak_by_pid[pid] = max(self.peak_by_pid.get(pid, 0), hwm)
            if pid not in self.role_by_pid:
                self.role_by_pid[pid] = _role(pid, self.root)
        self.peak_tree_kb = max(self.peak_tree_kb, total)
        self.samples += 1

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self.sample()
            stop.wait(SAMPLE_INTERVAL_S)

    def report(self) -> dict[str, float]:
        by_role: dict[str, int] = {}
        for pid, peak in self.peak_by_pid.items():
            role = self.role_by_pid.get(pid, "other")
            by_role[role] = max(by_role.get(role, 0), peak)
        figures = {f"{role}_peak_mb": round(kb / 1024, 1) for role, kb in sorted(by_role.items())}
        figures["tree_peak_mb"] = round(self.peak_tree_kb / 1024, 1)
        return figures


# --- one run of the command line -----------------------------------------------------------


def _environment(lakehouse: Path, prefect_home: Path, scale: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _CLEARED}
    env.update(
        {
            "LAKEHOUSE_DIR": str(lakehouse),
            "PREFECT_HOME": str(prefect_home),
            "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "DO_NOT_TRACK": "1",
            "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
            "DEMO_SCALE": str(scale),
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def _documents_read(output: str) -> int | None:
    match = re.search(r"([\d,]+) documents read", output)
    return int(match.group(1).replace(",", "")) if match else None


def run_cli(preset: str, scale: int = 1, skip_dbt: bool = False) -> dict[str, Any]:
    """Time and measure one `python flows/main.py --preset P [--skip-dbt]` in a fresh setup."""
    folder = Path(tempfile.mkdtemp(prefix="bench-e2e-"))
    lakehouse, prefect_home = folder / "lakehouse", folder / "prefect-home"
    prefect_home.mkdir()
    command = [sys.executable, str(MAIN), "--preset", preset]
    if skip_dbt:
        command.append("--skip-dbt")
    lines: list[tuple[float, str]] = []
    try:
        started = time.perf_counter()
        process = subprocess.Popen(
            command,
            cwd=folder,  # no stray .env from the caller's folder
            env=_environment(lakehouse, prefect_home, scale),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
        memory = TreeMemory(process.pid)
        stop = threading.Event()
        sampler = threading.Thread(target=memory.run, args=(stop,), daemon=True)
        sampler.start()
        assert process.stdout is not None
        for line in process.stdout:
            lines.append((time.perf_counter() - started, line.rstrip("\n")))
        code = process.wait(timeout=RUN_TIMEOUT_S)
        total = time.perf_counter() - started
        stop.set()
        sampler.join(timeout=10)
        output = "\n".join(text for _, text in lines)
        if code != 0:
            raise RuntimeError(
                f"{' '.join(command[1:])} (DEMO_SCALE={scale}) exited with {code}:\n"
                + output[-4000:]
            )
        source_ready = next((t for t, text in lines if text.startswith("Source:")), None)
        run_began = next((t for t, text in lines if FLOW_RUN_BEGINS in text), None)
        done = next((t for t, text in lines if text.strip() == "Done."), total)
        documents = _documents_read(output)
        flow_s = done - source_ready if source_ready is not None else None
        pipeline_s = done - run_began if run_began is not None else None
        result: dict[str, Any] = {
            "preset": preset,
            "scale": scale,
            "dbt": not skip_dbt,
            "documents": documents,
            "seconds": round(total, 2),
            "demo_api_ready_s": None if source_ready is None else round(source_ready, 2),
            "flow_s": None if flow_s is None else round(flow_s, 2),
            # flow_s minus Prefect's ephemeral server start: the pipeline's own work
            "pipeline_s": None if pipeline_s is None else round(pipeline_s, 2),
            "docs_per_s": round(documents / pipeline_s) if documents and pipeline_s else None,
            "memory_samples": memory.samples,
            **memory.report(),
        }
        return result
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _warm_up() -> float:
    """Compile the stack's imports once (a user's second run never pays it)."""
    started = time.perf_counter()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    subprocess.run(
        [sys.executable, "-c", "import flows.main, flows.demo.server, dbt.cli.main"],
        env=env,
        check=True,
        capture_output=True,
    )
    return round(time.perf_counter() - started, 2)


def _ratio(after: float | None, before: float | None) -> float | None:
    return round(after / before, 2) if after and before else None


def growth_table(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each row with its growth over the previous one (documents, seconds, loader memory)."""
    table = []
    for index, row in enumerate(rows):
        entry = {
            "run": f"{row['preset']} x{row['scale']}",
            "documents": row["documents"],
            "seconds": row["seconds"],
            "flow_s": row["flow_s"],
            "pipeline_s": row["pipeline_s"],
            "docs_per_s": row["docs_per_s"],
            "loader_peak_mb": row.get("flow_peak_mb"),
            "demo_api_peak_mb": row.get("demo_api_peak_mb"),
            "tree_peak_mb": row.get("tree_peak_mb"),
        }
        if index:
            previous = rows[index - 1]
            entry["documents_ratio"] = _ratio(row["documents"], previous["documents"])
            entry["pipeline_s_ratio"] = _ratio(row["pipeline_s"], previous["pipeline_s"])
            entry["loader_peak_ratio"] = _ratio(
                row.get("flow_peak_mb"), previous.get("flow_peak_mb")
            )
        table.append(entry)
    return table


def run(quick: bool = False) -> dict[str, Any]:
    results: dict[str, Any] = {"warm_up_import_s": _warm_up()}
    preset = "small" if quick else "large"
    results["end_to_end"] = run_cli(preset)

    plan = [("small", 1)] if quick else [("small", 1), ("large", 1), ("large", 10)]
    rows = [run_cli(name, scale, skip_dbt=True) for name, scale in plan]
    results["growth"] = growth_table(rows)
    by_scale = {(row["preset"], row["scale"]): row for row in rows}
    peak: dict[str, Any] = {"target_mb_at_scale_10": PEAK_MEMORY_TARGET_MB}
    for (name, scale), row in by_scale.items():
        peak[f"{name}_x{scale}_loader_mb"] = row.get("flow_peak_mb")
    x1, x10 = by_scale.get(("large", 1)), by_scale.get(("large", 10))
    if x1 and x10:
        loader_x10 = x10.get("flow_peak_mb")
        peak["growth_x1_to_x10"] = _ratio(loader_x10, x1.get("flow_peak_mb"))
        peak["meets_target"] = bool(
            loader_x10 is not None
            and loader_x10 < PEAK_MEMORY_TARGET_MB
            and (peak["growth_x1_to_x10"] or 99) < 10
        )
    results["peak_memory"] = peak
    return results


if __name__ == "__main__":
    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
