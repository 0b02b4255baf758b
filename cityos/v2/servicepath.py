"""``Fiware-ServicePath`` as NGSI-LD ``scope`` (GS CIM 009 clause 4.18).

Orion's service paths and NGSI-LD scopes are both absolute, hierarchical paths, and
Orion's ``/A/#`` is scopeQ's ``/A/#``, so an Entity's service path is stored as its scope
and NGSI-LD clients query it with ``scopeQ``. The root ``/`` is "no scope".

Writes take one path (default ``/``). Reads take up to 10 comma-separated paths, each
optionally ending in ``/#`` (that path and everything below); without the header a read
covers everything (``/#``), as in Orion. Levels are 1-50 letters, digits or underscores,
at most 10 of them; a trailing slash is dropped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cityos.core.model import StoredEntity
from cityos.core.query.ast import ScopeNode, ScopeOr, ScopeTerm
from cityos.core.query.scope import scope_term_regex
from cityos.errors import BadRequestData

__all__ = ["PathFilter", "read_paths", "write_path"]

_LEVEL = re.compile(r"^\w{1,50}$", re.ASCII)


def _levels(path: str) -> tuple[str, ...]:
    if not path.startswith("/"):
        raise BadRequestData(f"Service path {path!r} must start with /")
    body = path[1:].rstrip("/")
    if not body:
        return ()
    levels = tuple(body.split("/"))
    if any(not _LEVEL.match(level) for level in levels):
        raise BadRequestData(
            f"Service path {path!r} has a level that is not 1-50 letters, digits or underscores"
        )
    if len(levels) > 10:
        raise BadRequestData(f"Service path {path!r} has more than 10 levels")
    return levels


def write_path(header: str | None) -> str | None:
    """The scope of an Entity written with this header; None for the root ``/``."""
    if header is None or header.strip() in ("", "/"):
        return None
    path = header.strip()
    if "," in path or path.endswith("#"):
        raise BadRequestData("A write takes one service path, without # or commas")
    levels = _levels(path)
    return "/" + "/".join(levels) if levels else None


@dataclass(frozen=True, slots=True)
class PathFilter:
    """What a read's service paths select: scoped Entities by ``terms``, plus unscoped
    (root) Entities when ``root``; ``everything`` for ``/#``."""

    terms: tuple[ScopeTerm, ...] = ()
    root: bool = False
    everything: bool = True

    @property
    def scope_q(self) -> ScopeNode | None:
        """The scopeQ the store can apply (None: no scope condition)."""
        if self.everything or not self.terms or self.root:
            return None
        return self.terms[0] if len(self.terms) == 1 else ScopeOr(self.terms)

    @property
    def needs_check(self) -> bool:
        """True when the store's answer must still be checked entity by entity: scopeQ
        cannot say "no scope", so a read that includes the root is filtered here."""
        return not self.everything and self.root

    def matches(self, entity: StoredEntity) -> bool:
        if self.everything:
            return True
        scopes = entity.get("scope") or []
        if not scopes:
            return self.root
        return any(re.match(scope_term_regex(t), s) for t in self.terms for s in scopes)


def read_paths(header: str | None) -> PathFilter:
    if header is None or not header.strip():
        return PathFilter()
    paths = [p.strip() for p in header.split(",")]
    if len(paths) > 10:
        raise BadRequestData("A read takes at most 10 service paths")
    terms: list[ScopeTerm] = []
    root = False
    for path in paths:
        if path == "/#":
            return PathFilter()
        descendants = path.endswith("/#")
        levels = _levels(path[:-2] if descendants else path)
        if not levels:
            root = True
            continue
        terms.append(ScopeTerm(levels, descendants))
    return PathFilter(tuple(terms), root, everything=False)
