"""Tests of cityos/core/query/q.py: the q parser (GS CIM 009 V1.8.1, clause 4.9)."""

from __future__ import annotations

import re
from datetime import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cityos.core.query.ast import (
    INSTANCE_MEMBERS,
    AttrPath,
    CompareOp,
    LiteralKind,
    QAnd,
    QComparison,
    QExists,
    QLiteral,
    QNode,
    QOr,
    QPattern,
    QRange,
    QValueList,
)
from cityos.core.query.q import expand_q, parse_q
from cityos.errors import BadRequestData

K = LiteralKind


def lit(kind: LiteralKind, value: str | int | float | bool) -> QLiteral:
    return QLiteral(kind, value)


def cmp(name: str, op: str, value: QLiteral | QRange | QValueList) -> QComparison:
    return QComparison(AttrPath(name), CompareOp(op), value)


NUM = lit(K.NUMBER, 20)

VALID: list[tuple[str, QNode]] = [
    ("temperature", QExists(AttrPath("temperature"))),
    ("!temperature", QExists(AttrPath("temperature"), negated=True)),
    ("temperature==20", cmp("temperature", "==", NUM)),
    ("temperature!=20", cmp("temperature", "!=", NUM)),
    ("temperature>20", cmp("temperature", ">", NUM)),
    ("temperature>=20", cmp("temperature", ">=", NUM)),
    ("temperature<20", cmp("temperature", "<", NUM)),
    ("temperature<=20", cmp("temperature", "<=", NUM)),
    ("t==-1.5e3", cmp("t", "==", lit(K.NUMBER, -1500.0))),
    ("t==0", cmp("t", "==", lit(K.NUMBER, 0))),
    ('brandName!="Mercedes"', cmp("brandName", "!=", lit(K.STRING, "Mercedes"))),
    (r'n=="a\"b\\c\u00e9;|)"', cmp("n", "==", lit(K.STRING, 'a"b\\cé;|)'))),
    ('n==""', cmp("n", "==", lit(K.STRING, ""))),
    ("b==true", cmp("b", "==", lit(K.BOOLEAN, True))),
    ("b!=false", cmp("b", "!=", lit(K.BOOLEAN, False))),
    ("t==10..20", cmp("t", "==", QRange(lit(K.NUMBER, 10), lit(K.NUMBER, 20)))),
    ('s!="a".."c"', cmp("s", "!=", QRange(lit(K.STRING, "a"), lit(K.STRING, "c")))),
    (
        'c=="black","red",3,true',
        cmp(
            "c",
            "==",
            QValueList(
                (
                    lit(K.STRING, "black"),
                    lit(K.STRING, "red"),
                    lit(K.NUMBER, 3),
                    lit(K.BOOLEAN, True),
                )
            ),
        ),
    ),
    ("refDevice==urn:ngsi-ld:Device:1", cmp("refDevice", "==", lit(K.URI, "urn:ngsi-ld:Device:1"))),
    ("r==https://x.org/a?b=1#f", cmp("r", "==", lit(K.URI, "https://x.org/a?b=1#f"))),
    ("d>=2017-12-24T12:00:00Z", cmp("d", ">=", lit(K.DATE_TIME, "2017-12-24T12:00:00Z"))),
    (
        "d<2017-12-24T12:00:00.123+01:00",
        cmp("d", "<", lit(K.DATE_TIME, "2017-12-24T12:00:00.123+01:00")),
    ),
    ("d==2017-12-24", cmp("d", "==", lit(K.DATE, "2017-12-24"))),
    ("d>12:00:00", cmp("d", ">", lit(K.TIME, "12:00:00"))),
    (
        "d==2020-01-01..2020-12-31",
        cmp("d", "==", QRange(lit(K.DATE, "2020-01-01"), lit(K.DATE, "2020-12-31"))),
    ),
    (
        "temperature.observedAt>=2017-12-24T12:00:00Z",
        QComparison(
            AttrPath("temperature", member="observedAt"),
            CompareOp.GREATER_EQ,
            lit(K.DATE_TIME, "2017-12-24T12:00:00Z"),
        ),
    ),
    (
        'address[city]=="Berlin"',
        QComparison(AttrPath("address", keys=("city",)), CompareOp.EQUAL, lit(K.STRING, "Berlin")),
    ),
    (
        "sensor.rawdata[airquality.particulate]==40",
        QComparison(
            AttrPath("sensor", ("rawdata",), keys=("airquality", "particulate")),
            CompareOp.EQUAL,
            lit(K.NUMBER, 40),
        ),
    ),
    ("a[b][c-d][@e]", QExists(AttrPath("a", keys=("b", "c-d", "@e")))),
    ("a.b.c.unitCode", QExists(AttrPath("a", ("b", "c"), member="unitCode"))),
    ("ns:attr==1", cmp("ns:attr", "==", lit(K.NUMBER, 1))),
    ("温度>1", cmp("温度", ">", lit(K.NUMBER, 1))),
    ("name~=(?i)ab.*c", QPattern(AttrPath("name"), "(?i)ab.*c")),
    ("name!~=^a(b|c)[;|)]$", QPattern(AttrPath("name"), "^a(b|c)[;|)]$", negated=True)),
    ('name~="x;y|z"', QPattern(AttrPath("name"), "x;y|z")),
    ("a;b;c", QAnd((QExists(AttrPath("a")), QExists(AttrPath("b")), QExists(AttrPath("c"))))),
    ("a|b|c", QOr((QExists(AttrPath("a")), QExists(AttrPath("b")), QExists(AttrPath("c"))))),
    # Clause 4.9: AND takes precedence over OR.
    (
        "a|b;c",
        QOr((QExists(AttrPath("a")), QAnd((QExists(AttrPath("b")), QExists(AttrPath("c")))))),
    ),
    (
        "(a|b);c",
        QAnd((QOr((QExists(AttrPath("a")), QExists(AttrPath("b")))), QExists(AttrPath("c")))),
    ),
    ("((a))", QExists(AttrPath("a"))),
    ("(a;b);c", QAnd((QExists(AttrPath("a")), QExists(AttrPath("b")), QExists(AttrPath("c"))))),
    (
        '((speed>50|rpm>3000);brandName=="Mercedes")',
        QAnd(
            (
                QOr((cmp("speed", ">", lit(K.NUMBER, 50)), cmp("rpm", ">", lit(K.NUMBER, 3000)))),
                cmp("brandName", "==", lit(K.STRING, "Mercedes")),
            )
        ),
    ),
]

INVALID: list[tuple[str, str]] = [
    ("", "position 0: expected an attribute name"),
    ("a=", "position 1: expected an operator"),
    ("a==", "position 3: expected a value"),
    ("a==Mercedes", "expected a value"),
    ("a==null", "expected a value"),
    ("a==1 ", "expected ';', '|', ')'"),
    ("a == 1", "expected an operator"),
    ("a>true", "needs a number, a string, a date or a time"),
    ("a>urn:x:y", "needs a number"),
    ("a>1,2", "expected ';', '|', ')'"),
    ("a>1..2", "expected ';', '|', ')'"),
    ('a==1.."x"', "same kind"),
    ("a==true..false", "a range needs"),
    ("a==1..2,3", "expected ';', '|', ')'"),
    ("(a", "expected ')'"),
    ("a)", "unexpected character ')'"),
    ("a;", "expected an attribute name"),
    ("a||b", "expected an attribute name"),
    ("()", "expected an attribute name"),
    ("1a", "expected an attribute name"),
    ("_a", "expected an attribute name"),
    ("a.", "after '.'"),
    ("a[", "compound value key"),
    ("a[b", "expected ']'"),
    ("a[]", "compound value key"),
    ("a.observedAt.b", "member observedAt must end the attribute path"),
    ("a.observedAt[b]", "no compound value"),
    ("!a==1", "expected ';', '|', ')'"),
    ("!!a", "expected an attribute name"),
    ('a=="abc', "not terminated"),
    ('a=="\x01"', "invalid quoted string"),
    (r'a=="\x"', "invalid quoted string"),
    (r'a=="\ud800"', "invalid quoted string"),
    ("a==99999999999999999999", "out of range"),
    ("a==1e400", "out of range"),
    ("a==01", "position 4: expected ';'"),
    ("a==2020-13-01", "invalid date"),
    ("a==2020-01-01T25:00:00Z", "invalid dateTime"),
    ("a~=", "expected a regular expression"),
    ("a~=(", "invalid regular expression"),
    ('a~=""', "expected a regular expression"),
    ("a~=x{99999999999999999999}", "invalid regular expression"),
    ("(" * 40 + "a" + ")" * 40, "nested more than 32 deep"),
]


@pytest.mark.parametrize(("text", "expected"), VALID)
def test_parse_valid(text: str, expected: QNode) -> None:
    assert parse_q(text) == expected


@pytest.mark.parametrize(("text", "message"), INVALID)
def test_parse_invalid(text: str, message: str) -> None:
    with pytest.raises(BadRequestData) as caught:
        parse_q(text)
    assert caught.value.detail.startswith("Invalid q expression at position ")
    assert message in caught.value.detail


def test_error_names_the_position() -> None:
    with pytest.raises(BadRequestData, match="^Invalid q expression at position 7: expected an"):
        parse_q("a;b==1;")


def test_expand_maps_attribute_names_only() -> None:
    node = parse_q("a.b.observedAt>2020-01-01|c.d[k.l]==1;!e")
    expected = QOr(
        (
            QComparison(
                AttrPath("urn:x:a", ("urn:x:b",), member="observedAt"),
                CompareOp.GREATER,
                lit(K.DATE, "2020-01-01"),
            ),
            QAnd(
                (
                    QComparison(
                        AttrPath("urn:x:c", ("urn:x:d",), keys=("k", "l")),
                        CompareOp.EQUAL,
                        lit(K.NUMBER, 1),
                    ),
                    QExists(AttrPath("urn:x:e"), negated=True),
                )
            ),
        )
    )
    assert expand_q(node, lambda term: "urn:x:" + term) == expected


# --- Hypothesis: any text parses or raises BadRequestData; ASTs round-trip via render().

QUERY_CHARS = 'ab_1.[]=!<>~;|(),"\\ :/#+-eETZ0'


@given(st.text() | st.text(alphabet=QUERY_CHARS))
def test_any_text_parses_or_raises_bad_request_data(text: str) -> None:
    try:
        node = parse_q(text)
    except BadRequestData:
        return
    assert parse_q(node.render()) == node


names = st.builds(
    lambda first, rest, prefix: (prefix + ":" if prefix else "") + first + rest,
    st.characters(categories=["Lu", "Ll", "Lo"]),
    st.text(
        alphabet=st.characters(categories=["Lu", "Ll", "Nd"], include_characters="_"), max_size=6
    ),
    st.sampled_from(["", "ns"]),
).filter(lambda name: name not in INSTANCE_MEMBERS)
keys = st.text(
    alphabet=st.characters(categories=["Ll", "Nd"], include_characters="_-@:"),
    min_size=1,
    max_size=5,
)


@st.composite
def attr_paths(draw: st.DrawFn) -> AttrPath:
    member = draw(st.none() | st.sampled_from(sorted(INSTANCE_MEMBERS)))
    path_keys = () if member else tuple(draw(st.lists(keys, max_size=3)))
    return AttrPath(draw(names), tuple(draw(st.lists(names, max_size=2))), member, path_keys)


numbers = st.builds(
    lambda n: lit(K.NUMBER, n),
    st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False, allow_infinity=False),
)
strings = st.builds(lambda s: lit(K.STRING, s), st.text())
date_times = st.builds(
    lambda d, spec, zone: lit(K.DATE_TIME, d.isoformat(timespec=spec) + zone),
    st.datetimes(min_value=datetime(1000, 1, 1)),
    st.sampled_from(["seconds", "milliseconds", "microseconds"]),
    st.sampled_from(["Z", "", "+09:00"]),
)
dates = st.builds(
    lambda d: lit(K.DATE, d.isoformat()), st.dates(min_value=datetime(1000, 1, 1).date())
)
times = st.builds(lambda t: lit(K.TIME, t.isoformat()), st.times())
comparables = numbers | strings | date_times | dates | times
literals = (
    comparables
    | st.builds(lambda b: lit(K.BOOLEAN, b), st.booleans())
    | st.builds(
        lambda u: lit(K.URI, u),
        st.from_regex(r"urn:[a-z]{1,4}:[A-Za-z0-9:._~-]{1,8}", fullmatch=True),
    )
)
ranges = comparables.flatmap(
    lambda low: st.builds(
        QRange, st.just(low), comparables.filter(lambda high: high.kind is low.kind)
    )
)
value_lists = st.lists(literals, min_size=2, max_size=4).map(lambda items: QValueList(tuple(items)))


@st.composite
def comparisons(draw: st.DrawFn) -> QComparison:
    op = draw(st.sampled_from(list(CompareOp)))
    if op in (CompareOp.EQUAL, CompareOp.UNEQUAL):
        return QComparison(draw(attr_paths()), op, draw(literals | ranges | value_lists))
    return QComparison(draw(attr_paths()), op, draw(comparables))


terms = (
    st.builds(QExists, attr_paths(), st.booleans())
    | comparisons()
    | st.builds(QPattern, attr_paths(), st.text(min_size=1).map(re.escape), st.booleans())
)


def _normal(kind: type, children: list[QNode]) -> QNode:
    flat: list[QNode] = []
    for child in children:
        flat.extend(child.terms if isinstance(child, kind) else [child])  # type: ignore[attr-defined]
    return kind(tuple(flat))


q_trees = st.recursive(
    terms,
    lambda inner: st.builds(
        _normal, st.sampled_from([QAnd, QOr]), st.lists(inner, min_size=2, max_size=3)
    ),
    max_leaves=8,
)


@given(q_trees)
def test_render_parse_round_trip(node: QNode) -> None:
    assert parse_q(node.render()) == node
