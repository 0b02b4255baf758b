"""Tests of cityos/core/query/typeexpr.py: Entity Type selection (GS CIM 009 V1.8.1, 4.17)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cityos.core.query.ast import TypeAnd, TypeName, TypeNode, TypeOr
from cityos.core.query.typeexpr import expand_types, parse_types, type_names
from cityos.errors import BadRequestData

A, B, C = TypeName("Building"), TypeName("House"), TypeName("Motorhome")

VALID: list[tuple[str, TypeNode]] = [
    ("Building", A),
    ("Building,House", TypeOr((A, B))),
    ("Building|House", TypeOr((A, B))),
    ("(Building;House)", TypeAnd((A, B))),
    ("(Building;House)|Motorhome", TypeOr((TypeAnd((A, B)), C))),
    ("(Building;House),Motorhome", TypeOr((TypeAnd((A, B)), C))),
    ("Motorhome,(Building|House)", TypeOr((C, A, B))),
    ("(Building|House);Motorhome", TypeAnd((TypeOr((A, B)), C))),
    ("https://example.org/T#x", TypeName("https://example.org/T#x")),
    ("schema:Person,urn:ngsi-ld:T", TypeOr((TypeName("schema:Person"), TypeName("urn:ngsi-ld:T")))),
    ("車両", TypeName("車両")),
]

INVALID: list[tuple[str, str]] = [
    ("", "position 0: expected an entity type"),
    ("Building,", "position 9: expected an entity type"),
    ("1Building", "expected an entity type"),
    ("Build ing", "unexpected character ' '"),
    ("Build-ing", "unexpected character '-'"),
    ("(Building;House", "expected ')'"),
    ("Building)", "unexpected character ')'"),
    ('"Building"', "expected an entity type"),
]


@pytest.mark.parametrize(("text", "expected"), VALID)
def test_parse_valid(text: str, expected: TypeNode) -> None:
    assert parse_types(text) == expected


@pytest.mark.parametrize(("text", "message"), INVALID)
def test_parse_invalid(text: str, message: str) -> None:
    with pytest.raises(BadRequestData) as caught:
        parse_types(text)
    assert caught.value.detail.startswith("Invalid type expression at position ")
    assert message in caught.value.detail


def test_expand_types() -> None:
    node = expand_types(parse_types("(A;B)|C"), lambda term: "urn:t:" + term)
    assert node == TypeOr(
        (TypeAnd((TypeName("urn:t:A"), TypeName("urn:t:B"))), TypeName("urn:t:C"))
    )


@pytest.mark.parametrize(
    ("text", "names"),
    [("A", ("A",)), ("A,B|C", ("A", "B", "C")), ("(A;B)", None), ("(A;B)|C", None)],
)
def test_type_names(text: str, names: tuple[str, ...] | None) -> None:
    assert type_names(parse_types(text)) == names


@given(st.text() | st.text(alphabet="Ab1:/#,;|() -"))
def test_any_text_parses_or_raises_bad_request_data(text: str) -> None:
    try:
        node = parse_types(text)
    except BadRequestData:
        return
    assert parse_types(node.render()) == node


type_leaves = st.builds(
    TypeName,
    st.from_regex(r"[A-Za-z][A-Za-z0-9_]{0,5}", fullmatch=True)
    | st.from_regex(r"https://ex\.org/[A-Za-z0-9/#._~-]{1,8}", fullmatch=True),
)


def _normal(kind: type, children: list[TypeNode]) -> TypeNode:
    flat: list[TypeNode] = []
    for child in children:
        flat.extend(child.terms if isinstance(child, kind) else [child])  # type: ignore[attr-defined]
    return kind(tuple(flat))


type_trees = st.recursive(
    type_leaves,
    lambda inner: st.builds(
        _normal, st.sampled_from([TypeAnd, TypeOr]), st.lists(inner, min_size=2, max_size=3)
    ),
    max_leaves=6,
)


@given(type_trees)
def test_render_parse_round_trip(node: TypeNode) -> None:
    assert parse_types(node.render()) == node
