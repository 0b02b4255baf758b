"""Retention of temporal history: how long instances are kept, per tenant and Entity type.

The ``retention`` setting is a comma-separated list of rules::

    DURATION                    every tenant, every type
    @TENANT=DURATION            one tenant ("@" alone is the default tenant)
    TYPE=DURATION               one Entity type, every tenant
    TYPE@TENANT=DURATION        one type in one tenant

DURATION is an ISO 8601 duration (``P90D``, ``P1Y``, ``PT12H``). TYPE is an IRI, or a short
name expanded with the NGSI-LD default vocabulary (clause 4.5: ``Vehicle`` becomes
``https://uri.etsi.org/ngsi-ld/default-context/Vehicle``); Smart Data Models types are
given by their IRI. The most specific rule wins: an Entity of a type with its own rule is
kept by that rule alone. An instance expires when its time (observedAt, else when it was
recorded) is older than the duration.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cityos.core.temporal import Duration, parse_duration

__all__ = ["RetentionRule", "RetentionTarget", "parse_retention", "plan"]

DEFAULT_VOCAB = "https://uri.etsi.org/ngsi-ld/default-context/"


@dataclass(frozen=True, slots=True)
class RetentionRule:
    tenant: str | None  # None: every tenant
    type: str | None  # expanded; None: every type
    duration: Duration


@dataclass(frozen=True, slots=True)
class RetentionTarget:
    """What one retention pass deletes in one tenant: Entities of ``types`` (all when
    None), except those having one of ``exclude`` (kept by a more specific rule)."""

    types: tuple[str, ...] | None
    exclude: tuple[str, ...]
    duration: Duration


def parse_retention(text: str) -> list[RetentionRule]:
    rules = []
    for raw in (part.strip() for part in text.split(",")):
        if not raw:
            continue
        target, _, duration = raw.rpartition("=")
        if not duration.startswith("P"):
            raise ValueError(f"retention rule {raw!r}: the duration must be ISO 8601, like P90D")
        try:
            parsed = parse_duration(duration)
        except Exception as exc:
            raise ValueError(f"retention rule {raw!r}: {exc}") from None
        if parsed.is_zero:
            raise ValueError(f"retention rule {raw!r}: the duration must be longer than zero")
        type_name, at, tenant = target.rpartition("@") if "@" in target else (target, "", "")
        rules.append(
            RetentionRule(
                tenant=tenant if at else None,
                type=_expand(type_name) if type_name else None,
                duration=parsed,
            )
        )
    return rules


def _expand(name: str) -> str:
    return name if ":" in name else DEFAULT_VOCAB + name


def plan(rules: Sequence[RetentionRule], tenant: str) -> list[RetentionTarget]:
    """The passes for one tenant, most specific rule first."""
    mine = [r for r in rules if r.tenant in (None, tenant)]
    typed: dict[str, RetentionRule] = {}
    for rule in sorted(mine, key=lambda r: r.tenant is not None):  # tenant rules win
        if rule.type is not None:
            typed[rule.type] = rule
    targets = [RetentionTarget((t,), (), r.duration) for t, r in typed.items()]
    general = [r for r in mine if r.type is None]
    if general:
        rule = max(general, key=lambda r: r.tenant is not None)  # the tenant's own rule wins
        targets.append(RetentionTarget(None, tuple(typed), rule.duration))
    return targets
