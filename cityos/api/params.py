"""Query-string parameters of the NGSI-LD API, parsed into core types (GS CIM 009 clause 6.3).

Every malformed parameter raises BadRequestData here, before anything else runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from cityos.core.entities import check_uri
from cityos.core.render import RenderOptions
from cityos.errors import BadRequestData, InvalidRequest, TooManyResults

__all__ = [
    "FORMATS",
    "Paging",
    "parse_csv",
    "parse_flag",
    "parse_ids",
    "parse_options",
    "parse_paging",
    "render_options",
]

FORMATS = {
    "normalized": "normalized",
    "concise": "concise",
    "keyValues": "keyValues",
    "simplified": "keyValues",
}
_GET_OPTIONS = frozenset({"sysAttrs", "keyValues", "concise", "normalized", "simplified"})


def parse_csv(value: str | None) -> list[str]:
    if value is None:
        return []
    items = [v.strip() for v in value.split(",")]
    if any(not v for v in items):
        raise BadRequestData(f"The list {value!r} has an empty item")
    return items


def parse_options(params: Mapping[str, str], allowed: frozenset[str] = _GET_OPTIONS) -> set[str]:
    options = set(parse_csv(params.get("options")))
    unknown = options - allowed
    if unknown:  # clause 6.3.20: an unknown parameter value is InvalidRequest, as a name is
        raise InvalidRequest(f"Unknown options: {', '.join(sorted(unknown))}")
    return options


def parse_flag(params: Mapping[str, str], name: str) -> bool:
    value = params.get(name)
    if value is None:
        return False
    if value not in ("true", "false"):
        raise BadRequestData(f"Parameter {name} must be true or false, not {value!r}")
    return value == "true"


def parse_ids(params: Mapping[str, str]) -> list[str]:
    return [check_uri(i) for i in parse_csv(params.get("id"))]


def render_options(params: Mapping[str, str], attrs: list[str] | None = None) -> RenderOptions:
    """The representation asked for by ``options`` and ``format`` (clause 6.3.7)."""
    options = parse_options(params)
    fmt = "normalized"
    for name in ("keyValues", "simplified", "concise"):
        if name in options:
            fmt = FORMATS[name]
    if "format" in params:
        if params["format"] not in FORMATS:
            raise InvalidRequest(f"Unknown format {params['format']!r}")
        fmt = FORMATS[params["format"]]
    lang = params.get("lang")
    if lang is not None and not lang.strip():
        raise BadRequestData("Parameter lang must not be empty")
    datasets = params.get("datasetId")
    dataset_ids = None
    if datasets is not None:
        dataset_ids = frozenset(
            None if d == "@none" else check_uri(d, "datasetId") for d in parse_csv(datasets)
        )
    return RenderOptions(
        format=fmt, sys_attrs="sysAttrs" in options, lang=lang, attrs=attrs, dataset_ids=dataset_ids
    )


@dataclass(frozen=True, slots=True)
class Paging:
    limit: int
    offset: int
    count: bool


def parse_paging(params: Mapping[str, str], default_limit: int, max_limit: int) -> Paging:
    """``limit``, ``offset`` and ``count`` (clause 5.5.9, 6.3.13)."""
    limit = _non_negative(params, "limit", default_limit)
    offset = _non_negative(params, "offset", 0)
    count = parse_flag(params, "count")
    if limit > max_limit:
        raise TooManyResults(f"limit {limit} is larger than the maximum of {max_limit}")
    if limit == 0 and not count:
        raise BadRequestData("limit=0 is only allowed together with count=true")
    return Paging(limit, offset, count)


def _non_negative(params: Mapping[str, str], name: str, default: int) -> int:
    raw = params.get(name)
    if raw is None:
        return default
    if not raw.isdigit():
        raise BadRequestData(f"Parameter {name} must be a non-negative integer, not {raw!r}")
    return int(raw)
