"""Tests of cityos/core/query/scope.py: the scopeQ parser (GS CIM 009 V1.8.1, clause 4.19)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cityos.core.query.ast import ScopeAnd, ScopeNode, ScopeOr, ScopeTerm
from cityos.core.query.scope import parse_scope_q, scope_term_regex
from cityos.errors import BadRequestData

MADRID = ScopeTerm(("Madrid",))

VALID: list[tuple[str, ScopeNode]] = [
    ("/Madrid", MADRID),
    ("/Madrid/Gardens/#", ScopeTerm(("Madrid", "Gardens"), descendants=True)),
    ("/Madrid/+/ParqueNorte", ScopeTerm(("Madrid", "+", "ParqueNorte"))),
    ("/+/#", ScopeTerm(("+",), descendants=True)),
    ("/#", ScopeTerm((), descendants=True)),
    ("/東京/区_1", ScopeTerm(("東京", "区_1"))),
    (
        "(/Madrid/Districts;/CompanyA)",
        ScopeAnd((ScopeTerm(("Madrid", "Districts")), ScopeTerm(("CompanyA",)))),
    ),
    (
        "(/Madrid/Districts;/CompanyA)|/CompanyB",
        ScopeOr(
            (
                ScopeAnd((ScopeTerm(("Madrid", "Districts")), ScopeTerm(("CompanyA",)))),
                ScopeTerm(("CompanyB",)),
            )
        ),
    ),
    ("/a,/b|/c", ScopeOr((ScopeTerm(("a",)), ScopeTerm(("b",)), ScopeTerm(("c",))))),
    ("/a;/b", ScopeAnd((ScopeTerm(("a",)), ScopeTerm(("b",))))),
]

INVALID: list[tuple[str, str]] = [
    ("", "position 0: expected '/'"),
    ("Madrid", "position 0: expected '/'"),
    ("/", "position 1: expected a scope level"),
    ("/a/", "position 3: expected a scope level"),
    ("/a//b", "expected a scope level"),
    ("/a/#/b", "position 4: unexpected character '/'"),
    ("/a#", "unexpected character '#'"),
    ("/a b", "unexpected character ' '"),
    ("/1a", "expected a scope level"),
    ("/a+", "unexpected character '+'"),
    ("(/a;/b", "expected ')'"),
    ("/a,", "expected '/'"),
    ("(" * 40 + "/a" + ")" * 40, "nested more than 32 deep"),
]


@pytest.mark.parametrize(("text", "expected"), VALID)
def test_parse_valid(text: str, expected: ScopeNode) -> None:
    assert parse_scope_q(text) == expected


@pytest.mark.parametrize(("text", "message"), INVALID)
def test_parse_invalid(text: str, message: str) -> None:
    with pytest.raises(BadRequestData) as caught:
        parse_scope_q(text)
    assert caught.value.detail.startswith("Invalid scopeQ expression at position ")
    assert message in caught.value.detail


@pytest.mark.parametrize(
    ("text", "scope", "matches"),
    [
        ("/Madrid/Gardens/#", "/Madrid/Gardens", True),
        ("/Madrid/Gardens/#", "/Madrid/Gardens/ParqueNorte/Parterre1", True),
        ("/Madrid/Gardens/#", "/Madrid/GardensX", False),
        ("/Madrid/+/ParqueNorte", "/Madrid/Sights/ParqueNorte", True),
        ("/Madrid/+/ParqueNorte", "/Madrid/ParqueNorte", False),
        ("/Madrid/+/ParqueNorte", "/Madrid/a/b/ParqueNorte", False),
        ("/Madrid/+/#", "/Madrid/a", True),
        ("/Madrid/+/#", "/Madrid", False),
        ("/Madrid/+", "/Madrid/a/", False),
    ],
)
def test_scope_term_regex(text: str, scope: str, matches: bool) -> None:
    term = parse_scope_q(text)
    assert isinstance(term, ScopeTerm)
    assert (re.search(scope_term_regex(term), scope) is not None) is matches


@given(st.text() | st.text(alphabet="/ab1+#;,|() "))
def test_any_text_parses_or_raises_bad_request_data(text: str) -> None:
    try:
        node = parse_scope_q(text)
    except BadRequestData:
        return
    assert parse_scope_q(node.render()) == node


levels = st.text(alphabet="abcXYZ_1", min_size=1, max_size=4).filter(
    lambda s: s[0].isalpha()
) | st.just("+")
scope_terms = st.builds(ScopeTerm, st.lists(levels, max_size=3).map(tuple), st.booleans()).filter(
    lambda term: bool(term.levels) or term.descendants
)


def _normal(kind: type, children: list[ScopeNode]) -> ScopeNode:
    flat: list[ScopeNode] = []
    for child in children:
        flat.extend(child.terms if isinstance(child, kind) else [child])  # type: ignore[attr-defined]
    return kind(tuple(flat))


scope_trees = st.recursive(
    scope_terms,
    lambda inner: st.builds(
        _normal, st.sampled_from([ScopeAnd, ScopeOr]), st.lists(inner, min_size=2, max_size=3)
    ),
    max_leaves=6,
)


@given(scope_trees)
def test_render_parse_round_trip(node: ScopeNode) -> None:
    assert parse_scope_q(node.render()) == node
