"""Figures as they are measured: one ``name value`` line each on stdout, with the target
and PASS/FAIL when the figure has one, then everything as one JSON object.

Every ``*_errors`` and ``*_wrong_results`` figure has the implicit target 0: a benchmark
that got failed requests or wrong data is not a result.
"""

from __future__ import annotations

import math
import operator
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["TARGETS", "Report", "Target"]

Figure = float | int | str | None


@dataclass(frozen=True)
class Target:
    op: str
    bound: float

    def met(self, value: float) -> bool:
        return _COMPARISONS[self.op](value, self.bound)

    def describe(self) -> str:
        return f"target {self.op} {self.bound:g}"


# City OS goals on a 2-core machine, server on one core, 100,000 Entities loaded.
TARGETS = {
    "create_req_per_s": Target(">=", 3000),
    "create_p99_ms": Target("<=", 50),
    "batch_upsert_entities_per_s": Target(">=", 25000),
    "retrieve_req_per_s": Target(">=", 6000),
    "query_q_req_per_s": Target(">=", 1000),
    "geo_near_req_per_s": Target(">=", 800),
    "rss_mb": Target("<=", 200),
    # Temporal (issue #4): bench/temporal_run.py
    "history_update_ratio": Target(">=", 0.8),
    "lastn100_req_per_s": Target(">=", 500),
    "aggr_1_entity_p95_ms": Target("<=", 30),
    "aggr_100_entities_p95_ms": Target("<=", 500),
}
_MUST_BE_ZERO = Target("==", 0)
_COMPARISONS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    "==": operator.eq,
}


@dataclass
class Report:
    figures: dict[str, Figure] = field(default_factory=dict)
    verdicts: dict[str, bool] = field(default_factory=dict)
    samples: dict[str, list[str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def add(self, name: str, value: Figure) -> None:
        if isinstance(value, float):
            value = None if math.isnan(value) else round(value, 2)
        self.figures[name] = value
        target = _target_of(name)
        line = f"{name} {_render(value)}"
        if target is not None and isinstance(value, int | float):
            self.verdicts[name] = target.met(value)
            line += f"    ({target.describe()}: {'PASS' if self.verdicts[name] else 'FAIL'})"
        elif target is not None:
            line += f"    ({target.describe()}: not measured)"
        print(line, flush=True)
        if name.endswith("_wrong_results") and value:
            self.note(f"WRONG RESULTS: {name} = {value}; the figures of this workload are void")

    def add_samples(self, workload: str, samples: list[str]) -> None:
        if samples:
            self.samples[workload] = samples
            for sample in samples:
                progress(f"  {workload}: {sample}")

    def note(self, message: str) -> None:
        self.notes.append(message)
        progress(f"!!! {message}")

    def failed(self) -> list[str]:
        return [name for name, met in self.verdicts.items() if not met]

    def summary(self) -> str:
        failed = self.failed()
        met = len(self.verdicts) - len(failed)
        text = f"summary: {met}/{len(self.verdicts)} targets and checks met"
        return text + (f"; FAIL: {', '.join(failed)}" if failed else "")

    def as_json(self, machine: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
        return {
            "figures": self.figures,
            "targets": {name: TARGETS[name].describe() for name in TARGETS},
            "failed": self.failed(),
            "samples": self.samples,
            "notes": self.notes,
            "machine": machine,
            "config": config,
        }


def progress(message: str) -> None:
    """Progress and diagnostics go to stderr, so stdout holds only figures and JSON."""
    print(message, file=sys.stderr, flush=True)


def _target_of(name: str) -> Target | None:
    if name.endswith(("_errors", "_wrong_results")):
        return _MUST_BE_ZERO
    return TARGETS.get(name)


def _render(value: Figure) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.1f}" if abs(value) >= 100 else f"{value:.2f}"
    return str(value)
