"""Linked Entity Retrieval and nested projections (GS CIM 009 V1.8.1 clauses 4.5.23, 4.21).

``join=inline`` puts each Relationship's target Entity under an ``entity`` member (or, in
keyValues, in place of the object); ``join=flat`` returns the Entities followed by every
Entity they link to, once each. ``joinLevel`` (default 1) is how many hops to follow.
``pick``/``omit`` items may carry a nested projection for the linked Entity:
``locatedAt{id,name}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cityos.core.jsonld import CompiledContext
from cityos.core.model import StoredEntity
from cityos.core.query.ast import Projection
from cityos.core.query.projection import parse_omit, parse_pick
from cityos.core.render import RenderOptions, render_entity
from cityos.errors import BadRequestData
from cityos.storage.base import EntityQuery, Store

__all__ = [
    "Join",
    "Shape",
    "apply_shape",
    "collect_linked",
    "parse_join",
    "relationship_objects",
    "render_tree",
]

_MAX_LEVEL = 8


@dataclass(frozen=True, slots=True)
class Join:
    mode: str  # "inline" or "flat"
    level: int


@dataclass(frozen=True, slots=True)
class Shape:
    """What to keep of an Entity at one level: pick or omit, with nested projections."""

    pick: Projection | None = None
    omit: Projection | None = None

    def names(self) -> tuple[frozenset[str] | None, frozenset[str]]:
        picked = self.pick.names() if self.pick else None
        omitted = (
            frozenset(i.name for i in self.omit.items if i.linked is None)
            if self.omit
            else frozenset()
        )
        return picked, omitted

    def linked(self, name: str) -> Shape:
        source = self.pick or self.omit
        for item in source.items if source else ():
            if item.name == name and item.linked is not None:
                return Shape(pick=item.linked) if self.pick else Shape(omit=item.linked)
        return Shape()


def parse_shape(params: Mapping[str, Any]) -> Shape:
    pick, omit = params.get("pick"), params.get("omit")
    if pick is not None and omit is not None:
        raise BadRequestData("pick and omit cannot be used together")
    if (pick is not None or omit is not None) and params.get("attrs") is not None:
        raise BadRequestData("attrs cannot be used together with pick or omit")
    return Shape(
        pick=parse_pick(_text(pick)) if pick is not None else None,
        omit=parse_omit(_text(omit)) if omit is not None else None,
    )


def _text(value: Any) -> str:
    return ",".join(value) if isinstance(value, list) else str(value)


def parse_join(params: Mapping[str, Any]) -> Join | None:
    mode = params.get("join")
    if mode is None or mode == "@none":
        return None
    if mode not in ("inline", "flat"):
        raise BadRequestData(f"join must be inline, flat or @none, not {mode!r}")
    raw = params.get("joinLevel", "1")
    if not str(raw).isdigit() or not 0 < int(raw) <= _MAX_LEVEL:
        raise BadRequestData(f"joinLevel must be an integer from 1 to {_MAX_LEVEL}")
    return Join(mode, int(raw))


def relationship_objects(entity: StoredEntity) -> list[str]:
    out: list[str] = []
    for instances in entity.get("attrs", {}).values():
        for inst in instances:
            out.extend(_objects(inst))
    return out


def _objects(inst: Mapping[str, Any]) -> list[str]:
    if inst.get("type") == "Relationship":
        value = inst["value"]
        return [v for v in (value if isinstance(value, list) else [value]) if isinstance(v, str)]
    if inst.get("type") == "ListRelationship":
        return [i["object"] if isinstance(i, dict) else i for i in inst["value"]]
    return []


async def collect_linked(
    store: Store, tenant: str, roots: list[StoredEntity], level: int
) -> dict[str, StoredEntity]:
    """Every Entity reachable from ``roots`` in up to ``level`` Relationship hops."""
    found: dict[str, StoredEntity] = {e["id"]: e for e in roots}
    frontier = roots
    for _ in range(level):
        wanted = sorted({o for e in frontier for o in relationship_objects(e)} - found.keys())
        if not wanted:
            break
        page = await store.query_entities(EntityQuery(tenant=tenant, ids=wanted, limit=len(wanted)))
        for entity in page.entities:
            found[entity["id"]] = entity
        frontier = page.entities
    return found


@dataclass(frozen=True, slots=True)
class TreeRenderer:
    ctx: CompiledContext
    opts: RenderOptions
    linked: Mapping[str, StoredEntity]
    join: Join | None
    linked_opts: RenderOptions | None = None  # for linked Entities, when not ``opts``

    def render(self, entity: StoredEntity, shape: Shape, depth: int = 0) -> dict[str, Any]:
        opts = self.opts if depth == 0 or self.linked_opts is None else self.linked_opts
        out = apply_shape(render_entity(entity, self.ctx, opts), shape)
        if self.join is None or self.join.mode != "inline" or depth >= self.join.level:
            return out
        for iri, instances in entity.get("attrs", {}).items():
            key = self.ctx.compact(iri)
            if key in out:
                out[key] = self._inline(out[key], instances, shape.linked(key), depth)
        return out

    def _inline(self, rendered: Any, instances: list[Any], shape: Shape, depth: int) -> Any:
        targets = [self.linked.get(o) for inst in instances for o in _objects(inst)]
        targets_found = [t for t in targets if t is not None]
        if not targets_found:
            return rendered
        embedded = [self.render(t, shape, depth + 1) for t in targets_found]
        if self.opts.format == "keyValues":
            return embedded[0] if len(embedded) == 1 else embedded
        if isinstance(rendered, dict):
            return {**rendered, "entity": embedded[0] if len(embedded) == 1 else embedded}
        return rendered

    def flat(self, roots: list[StoredEntity], shape: Shape) -> list[dict[str, Any]]:
        """The roots, then each linked Entity once, breadth first, each with its projection."""
        out = [self.render(r, shape) for r in roots]
        seen = {r["id"] for r in roots}
        frontier = [(r, shape, out[n]) for n, r in enumerate(roots)]
        for _ in range(self.join.level if self.join else 0):
            nxt = []
            for entity, ent_shape, shown in frontier:
                for iri, instances in entity.get("attrs", {}).items():
                    key = self.ctx.compact(iri)
                    if key not in shown:  # a Relationship projected away is not followed
                        continue
                    sub = ent_shape.linked(key)
                    for obj in (o for inst in instances for o in _objects(inst)):
                        target = self.linked.get(obj)
                        if target is not None and obj not in seen:
                            seen.add(obj)
                            rendered = self.render(target, sub, 1)
                            out.append(rendered)
                            nxt.append((target, sub, rendered))
            frontier = nxt
        return out


def render_tree(
    entities: list[StoredEntity], renderer: TreeRenderer, shape: Shape
) -> list[dict[str, Any]]:
    if renderer.join is not None and renderer.join.mode == "flat":
        return renderer.flat(entities, shape)
    return [renderer.render(e, shape) for e in entities]


def apply_shape(rendered: dict[str, Any], shape: Shape) -> dict[str, Any]:
    picked, omitted = shape.names()
    if picked is not None:
        return {k: v for k, v in rendered.items() if k in picked}
    if omitted:
        return {k: v for k, v in rendered.items() if k not in omitted}
    return rendered
