"""Tests of cityos/core/query/projection.py: attrs, pick and omit (GS CIM 009 V1.8.1, 4.21)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cityos.core.query.ast import Projection, ProjectionItem
from cityos.core.query.projection import (
    expand_projection,
    omit_entity,
    parse_attrs,
    parse_omit,
    parse_pick,
    pick_entity,
    select_attrs,
)
from cityos.errors import BadRequestData


def items(*names: str) -> Projection:
    return Projection(tuple(ProjectionItem(name) for name in names))


VALID_PICK: list[tuple[str, Projection]] = [
    ("temperature", items("temperature")),
    ("temperature,humidity", items("temperature", "humidity")),
    ("id|type,temperature", items("id", "type", "temperature")),
    (
        "observation{temperature,humidity},id",
        Projection(
            (ProjectionItem("observation", items("temperature", "humidity")), ProjectionItem("id"))
        ),
    ),
    ("a{b{c}}", Projection((ProjectionItem("a", Projection((ProjectionItem("b", items("c")),))),))),
    ("https://ex.org/a#b,ns:c", items("https://ex.org/a#b", "ns:c")),
]

INVALID: list[tuple[Callable[[str], Projection], str, str]] = [
    (parse_pick, "", "Invalid pick list at position 0: expected an attribute name"),
    (parse_pick, "a,", "Invalid pick list at position 2: expected an attribute name"),
    (parse_pick, "a{b", "expected '}'"),
    (parse_pick, "a{}", "expected an attribute name"),
    (parse_pick, "a b", "unexpected character ' '"),
    (parse_pick, "a" + "{a" * 40 + "}" * 40, "nested more than 32 deep"),
    (parse_omit, "a;b", "Invalid omit list at position 1: unexpected character ';'"),
    (parse_attrs, "a|b", "Invalid attrs list at position 1: unexpected character '|'"),
    (parse_attrs, "a{b}", "unexpected character '{'"),
    (parse_attrs, "1a", "expected an attribute name"),
]


@pytest.mark.parametrize(("text", "expected"), VALID_PICK)
def test_parse_pick(text: str, expected: Projection) -> None:
    assert parse_pick(text) == expected
    assert parse_omit(text) == expected


def test_parse_attrs() -> None:
    assert parse_attrs("a,b,https://ex.org/c") == items("a", "b", "https://ex.org/c")


@pytest.mark.parametrize(("parse", "text", "message"), INVALID)
def test_parse_invalid(parse: Callable[[str], Projection], text: str, message: str) -> None:
    with pytest.raises(BadRequestData, match=None) as caught:
        parse(text)
    assert message in caught.value.detail


def test_expand_leaves_entity_members_alone() -> None:
    projection = parse_pick("id,type,scope,createdAt,temperature,rel{id,humidity}")
    expanded = expand_projection(projection, lambda term: "urn:x:" + term)
    assert (
        expanded.render()
        == "id,type,scope,createdAt,urn:x:temperature,urn:x:rel{id,urn:x:humidity}"
    )


ENTITY = {
    "id": "urn:e:1",
    "type": ["urn:T"],
    "scope": ["/a"],
    "createdAt": "2026-01-01T00:00:00Z",
    "attrs": {
        "urn:a": [{"type": "Property", "value": 1}],
        "urn:b": [{"type": "Property", "value": 2}],
    },
}


def test_pick_keeps_listed_members_and_attributes() -> None:
    picked = pick_entity(ENTITY, items("id", "urn:a"))
    assert picked == {
        "id": "urn:e:1",
        "createdAt": "2026-01-01T00:00:00Z",
        "attrs": {"urn:a": ENTITY["attrs"]["urn:a"]},
    }


def test_omit_drops_listed_members_and_attributes() -> None:
    omitted = omit_entity(ENTITY, items("type", "scope", "urn:a", "urn:missing"))
    assert omitted == {
        "id": "urn:e:1",
        "createdAt": "2026-01-01T00:00:00Z",
        "attrs": {"urn:b": ENTITY["attrs"]["urn:b"]},
    }


def test_select_attrs_keeps_every_member() -> None:
    selected = select_attrs(ENTITY, items("urn:b", "id"))
    assert selected == {**ENTITY, "attrs": {"urn:b": ENTITY["attrs"]["urn:b"]}}
    assert ENTITY["attrs"]["urn:a"]  # the stored Entity is not modified


@given(st.text() | st.text(alphabet="ab1:/,|{} "))
def test_any_text_parses_or_raises_bad_request_data(text: str) -> None:
    for parse in (parse_attrs, parse_pick, parse_omit):
        try:
            projection = parse(text)
        except BadRequestData:
            continue
        assert parse(projection.render()) == projection


names = st.from_regex(r"[A-Za-z][A-Za-z0-9_]{0,5}", fullmatch=True)
projections = st.recursive(
    st.lists(names, min_size=1, max_size=3).map(lambda ns: items(*ns)),
    lambda inner: st.lists(
        st.builds(ProjectionItem, names, st.none() | inner), min_size=1, max_size=3
    ).map(lambda its: Projection(tuple(its))),
    max_leaves=6,
)


@given(projections)
def test_render_parse_round_trip(projection: Projection) -> None:
    assert parse_pick(projection.render()) == projection
