"""Rendering stored Entities for a response: compaction and the three representations.

GS CIM 009 V1.8.1 clause 4.5: normalized (every attribute with its type), concise
(clause 4.5.1.2: types left out where they follow from the members) and simplified or
keyValues (clause 4.5.4: values only). ``lang`` (clause 4.15) turns LanguageProperties into
Properties of one language; ``sysAttrs`` adds createdAt/modifiedAt.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from cityos.core.jsonld import CompiledContext
from cityos.core.model import VALUE_MEMBER, StoredAttribute, StoredEntity

__all__ = [
    "RenderOptions",
    "render_attribute",
    "render_entity",
    "render_instance",
    "select_language",
]

_SYS = ("createdAt", "modifiedAt")
_ABSENT = object()  # an attribute none of whose instances is selected


@dataclass(frozen=True, slots=True)
class RenderOptions:
    format: str = "normalized"  # normalized | concise | keyValues
    sys_attrs: bool = False
    lang: str | None = None
    attrs: Collection[str] | None = None  # expanded names to keep; None keeps all
    entity_members: Collection[str] | None = None  # of id/type/scope to keep (pick/omit)
    dataset_ids: Collection[str | None] | None = None  # instances to keep; None is the default one


def render_entity(
    entity: StoredEntity, ctx: CompiledContext, opts: RenderOptions
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    members = opts.entity_members
    if members is None or "id" in members:
        out["id"] = entity["id"]
    if members is None or "type" in members:
        types = [ctx.compact(t) for t in entity["type"]]
        out["type"] = types[0] if len(types) == 1 else types
    if "scope" in entity and (members is None or "scope" in members):
        scope = entity["scope"]
        out["scope"] = scope[0] if len(scope) == 1 and opts.format != "keyValues" else scope
    if opts.sys_attrs:
        out["createdAt"] = entity["createdAt"]
        out["modifiedAt"] = entity["modifiedAt"]
    keep = opts.attrs
    for iri, instances in entity.get("attrs", {}).items():
        if keep is not None and iri not in keep:
            continue
        rendered = render_attribute(instances, ctx, opts)
        if rendered is not _ABSENT:
            out[ctx.compact(iri)] = rendered
    return out


def render_attribute(
    instances: list[StoredAttribute], ctx: CompiledContext, opts: RenderOptions
) -> Any:
    if len(instances) == 1 and opts.dataset_ids is None:
        return render_instance(instances[0], ctx, opts)
    if opts.dataset_ids is not None:
        instances = [i for i in instances if i.get("datasetId") in opts.dataset_ids]
        if not instances:
            return _ABSENT
    if len(instances) == 1:
        return render_instance(instances[0], ctx, opts)
    if opts.format == "keyValues":  # clause 4.5.4: a multi-attribute maps datasetId to value
        return {
            "dataset": {i.get("datasetId", "@none"): _simplified(i, ctx, opts) for i in instances}
        }
    return [render_instance(i, ctx, opts) for i in instances]


_META = ("objectType", "observedAt", "unitCode", "datasetId")


def render_instance(inst: StoredAttribute, ctx: CompiledContext, opts: RenderOptions) -> Any:
    if opts.format == "keyValues":
        return _simplified(inst, ctx, opts)
    attr_type = inst["type"]
    value = inst["value"]
    if attr_type == "Property" or attr_type == "Relationship" or attr_type == "GeoProperty":
        out: dict[str, Any] = {"type": attr_type, VALUE_MEMBER[attr_type]: value}
    else:
        out = _other_value(attr_type, value, ctx, opts)
    for key in _META:
        if key in inst:
            out[key] = inst[key]
    if opts.sys_attrs:
        for key in _SYS:
            if key in inst:
                out[key] = inst[key]
    subs = inst.get("attrs")
    if subs:
        for iri, sub in subs.items():
            out[ctx.compact(iri)] = render_attribute(sub, ctx, opts)
    if opts.format == "concise":
        return _concise(out)
    return out


def _other_value(
    attr_type: str, value: Any, ctx: CompiledContext, opts: RenderOptions
) -> dict[str, Any]:
    if attr_type == "VocabProperty":
        value = [ctx.compact(v) for v in value] if isinstance(value, list) else ctx.compact(value)
    if attr_type == "LanguageProperty" and opts.lang is not None:
        text, tag = select_language(value, opts.lang)
        out: dict[str, Any] = {"type": "Property", "value": text}
        if tag is not None:
            out["lang"] = tag
        return out
    return {"type": attr_type, VALUE_MEMBER[attr_type]: value}


def _concise(out: dict[str, Any]) -> Any:
    # clause 4.5.1.2: the type is implied by the member; a lone Property value stands alone.
    attr_type = out.pop("type")
    if attr_type == "Property" and len(out) == 1 and "value" in out:
        return out["value"]
    if attr_type == "GeoProperty" and len(out) == 1:
        return {"value": out["value"]}
    return out


def _simplified(inst: StoredAttribute, ctx: CompiledContext, opts: RenderOptions) -> Any:
    attr_type = inst["type"]
    value = inst["value"]
    if attr_type == "LanguageProperty":
        if opts.lang is not None:
            return select_language(value, opts.lang)[0]
        return {"languageMap": value}
    if attr_type == "JsonProperty":
        return {"json": value}
    if attr_type == "VocabProperty":
        return {
            "vocab": [ctx.compact(v) for v in value]
            if isinstance(value, list)
            else ctx.compact(value)
        }
    if attr_type == "ListRelationship":
        return {"objectList": value}
    return value


def select_language(language_map: dict[str, Any], lang: str) -> tuple[Any, str | None]:
    """Picks the text for ``lang`` (clause 4.15): an exact tag, then its primary subtag,
    then ``@none``, then the first entry. ``*`` keeps the whole map."""
    if lang == "*":  # any language: the first the map has
        tag = next(iter(language_map))
        return language_map[tag], tag
    for wanted in (t.split(";")[0].strip() for t in lang.split(",")):
        if wanted in language_map:
            return language_map[wanted], wanted
        primary = wanted.split("-")[0]
        for tag, text in language_map.items():
            if tag.split("-")[0] == primary:
                return text, tag
    if "@none" in language_map:
        return language_map["@none"], "@none"
    tag = next(iter(language_map))
    return language_map[tag], tag
