"""Deterministic fault injection for the demo API.

A `FaultPlan` is a list of `FaultRule`s plus a seed and an optional bound (`max_faults`). For
each request subject to faults (every `/api/...` request except `/api/_demo/...`) the
`FaultInjector` numbers the request (0, 1, 2, ...) and draws, for each rule in order, a uniform
number from blake2b(seed, sequence number, path, rule index): the first rule whose draw is below
its rate fires. The same seed and the same request sequence therefore give the same faults.

Kinds:
- `500`, `502`, `503`: an error response; `burst=N` makes the next N-1 matching requests fail too.
- `429`: Too Many Requests with `Retry-After: <retry_after>` seconds.
- `latency`: the response is delayed by `delay` seconds (then served normally).
- `reset`: the connection is reset (TCP RST) before any response byte.
- `cut`: headers with the full Content-Length, half of the body, then the connection closes.
- `truncate`: a 200 whose body is a strict prefix of the real JSON, with a matching
  Content-Length: a complete HTTP message whose body is never valid JSON.
- `malform`: a valid response whose documents are all malformed the same way: every `id` of a
  list response is a UUID string (as a Payload whose database adapter uses `idType: 'uuid'`
  serves it), which a loader keyed on integer ids must reject. `malform:1:collection=orders`
  turns a whole collection into such documents.
- `short`: a valid list response that holds only the first half of its documents, with
  `totalDocs` and `hasNextPage` unchanged (a proxy or a broken adapter that cut the page): a
  reader that stops on a short page, or trusts it, misses documents.

CLI / admin spec: comma-separated `kind:rate[:option=value...]`, with shorthands `503:0.1x3`
(burst 3), `latency:0.1@2.0` (delay 2 s), `429:0.05@3` (Retry-After 3); options `burst`,
`delay`, `retry_after`, `first` (only the first N requests), `collection`; global items
`seed=N` and `max=N`. Example:
`503:0.1x3,429:0.05@2,reset:0.02,truncate:0.05:collection=orders,max=20`.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import asdict, dataclass, field
from typing import Any

# Transport faults: a resilient client recovers from them by retrying. Document faults: the
# response is valid, its documents are not; retrying reads the same again.
TRANSPORT_FAULT_KINDS = ("500", "502", "503", "429", "latency", "reset", "cut", "truncate")
DOCUMENT_FAULT_KINDS = ("malform", "short")
FAULT_KINDS = TRANSPORT_FAULT_KINDS + DOCUMENT_FAULT_KINDS


@dataclass(frozen=True)
class FaultRule:
    kind: str
    rate: float
    burst: int = 1
    delay: float = 1.0
    retry_after: int = 1
    first: int | None = None  # only requests with sequence number < first
    collection: str | None = None  # only paths under /api/<collection>

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; expected one of {FAULT_KINDS}")
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError(f"fault rate must be within [0, 1], got {self.rate}")
        if self.burst < 1 or self.delay < 0 or self.retry_after < 0:
            raise ValueError("burst must be >= 1, delay and retry_after >= 0")

    def applies(self, sequence: int, collection: str | None) -> bool:
        if self.first is not None and sequence >= self.first:
            return False
        return self.collection is None or self.collection == collection


@dataclass(frozen=True)
class FaultPlan:
    rules: tuple[FaultRule, ...] = ()
    seed: int = 0
    max_faults: int | None = None

    @classmethod
    def parse(cls, spec: str, seed: int = 0) -> FaultPlan:
        """Plan from the CLI syntax (see module docstring). Raises ValueError with the item."""
        rules: list[FaultRule] = []
        max_faults: int | None = None
        for raw_item in spec.split(","):
            item = raw_item.strip()
            if not item:
                continue
            if item.startswith("seed="):
                seed = int(item[5:])
                continue
            if item.startswith("max="):
                max_faults = int(item[4:])
                continue
            try:
                rules.append(_parse_rule(item))
            except (ValueError, TypeError) as exc:
                raise ValueError(f"bad fault spec item {item!r}: {exc}") from exc
        return cls(rules=tuple(rules), seed=seed, max_faults=max_faults)

    @classmethod
    def from_json(cls, data: dict[str, Any], default_seed: int = 0) -> FaultPlan:
        seed = int(data.get("seed", default_seed))
        if "spec" in data:
            plan = cls.parse(str(data["spec"]), seed=seed)
            if "max_faults" in data:
                plan = cls(plan.rules, plan.seed, data["max_faults"])
            return plan
        rules = tuple(
            FaultRule(**{**rule, "kind": str(rule["kind"])}) for rule in data.get("rules", [])
        )
        max_faults = data.get("max_faults")
        return cls(
            rules=rules, seed=seed, max_faults=None if max_faults is None else int(max_faults)
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "max_faults": self.max_faults,
            "rules": [asdict(rule) for rule in self.rules],
        }


def _parse_rule(item: str) -> FaultRule:
    parts = item.split(":")
    if len(parts) < 2:
        raise ValueError("expected kind:rate")
    kind, rate_text, options = parts[0].strip(), parts[1].strip(), parts[2:]
    values: dict[str, Any] = {}
    if "@" in rate_text:
        rate_text, param = rate_text.split("@", 1)
        values["retry_after" if kind == "429" else "delay"] = (
            int(param) if kind == "429" else float(param)
        )
    if "x" in rate_text:
        rate_text, burst = rate_text.split("x", 1)
        values["burst"] = int(burst)
    for option in options:
        name, _, value = option.partition("=")
        name = name.strip()
        if name in ("burst", "retry_after", "first"):
            values[name] = int(value)
        elif name == "delay":
            values[name] = float(value)
        elif name == "collection":
            values[name] = value.strip()
        else:
            raise ValueError(f"unknown option {name!r}")
    return FaultRule(kind=kind, rate=float(rate_text), **values)


@dataclass(frozen=True)
class Fault:
    kind: str
    rule: FaultRule


@dataclass
class FaultInjector:
    """Holds the current plan and the request sequence; thread-safe."""

    plan: FaultPlan = field(default_factory=FaultPlan)
    sequence: int = 0
    injected: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)
    _burst_rule: FaultRule | None = None
    _burst_left: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def set_plan(self, plan: FaultPlan) -> None:
        with self._lock:
            self.plan = plan
            self.sequence = 0
            self.injected = 0
            self.by_kind = {}
            self._burst_rule, self._burst_left = None, 0

    def decide(self, path: str, collection: str | None) -> Fault | None:
        with self._lock:
            sequence = self.sequence
            self.sequence += 1
            plan = self.plan
            if not plan.rules:
                return None
            if plan.max_faults is not None and self.injected >= plan.max_faults:
                return None
            chosen: FaultRule | None = None
            burst = self._burst_rule
            if self._burst_left > 0 and burst is not None and burst.applies(sequence, collection):
                chosen = burst
                self._burst_left -= 1
            if chosen is None:
                for index, rule in enumerate(plan.rules):
                    if rule.rate <= 0 or not rule.applies(sequence, collection):
                        continue
                    if _draw(plan.seed, sequence, path, index) < rule.rate:
                        chosen = rule
                        if rule.burst > 1:
                            self._burst_rule, self._burst_left = rule, rule.burst - 1
                        break
            if chosen is None:
                return None
            self.injected += 1
            self.by_kind[chosen.kind] = self.by_kind.get(chosen.kind, 0) + 1
            return Fault(chosen.kind, chosen)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "requests_seen": self.sequence,
                "injected": self.injected,
                "by_kind": dict(self.by_kind),
                "plan": self.plan.to_json(),
            }


def _draw(seed: int, sequence: int, path: str, index: int) -> float:
    digest = hashlib.blake2b(f"{seed}|{sequence}|{path}|{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def truncated(body: bytes) -> bytes:
    """A strict, non-empty prefix of a JSON body. A proper prefix of a JSON object or array text
    (orjson writes no trailing whitespace) is never itself valid JSON."""
    if len(body) <= 1:
        return b"{"
    return body[: max(1, len(body) // 2)]
