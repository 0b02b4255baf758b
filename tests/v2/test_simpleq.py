"""Orion's q and mq parsed into the NGSI-LD q AST (cityos/v2/simpleq.py)."""

from __future__ import annotations

import pytest

from cityos.core.query.ast import (
    AttrPath,
    CompareOp,
    LiteralKind,
    QComparison,
    QExists,
    QLiteral,
    QPattern,
    QRange,
    QValueList,
)
from cityos.errors import BadRequestData
from cityos.v2.simpleq import parse_simple_query

from .helpers import default_names

V = "https://uri.etsi.org/ngsi-ld/default-context/"


NAMES = default_names()


def num(x: float) -> QLiteral:
    return QLiteral(LiteralKind.NUMBER, x)


def text(x: str) -> QLiteral:
    return QLiteral(LiteralKind.STRING, x)


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        ("t>5", QComparison(AttrPath(V + "t"), CompareOp.GREATER, num(5))),
        ("t<=5.5", QComparison(AttrPath(V + "t"), CompareOp.LESS_EQ, num(5.5))),
        ("t:5", QComparison(AttrPath(V + "t"), CompareOp.EQUAL, num(5))),
        ("t==1..3", QComparison(AttrPath(V + "t"), CompareOp.EQUAL, QRange(num(1), num(3)))),
        ("c=='a,b'", QComparison(AttrPath(V + "c"), CompareOp.EQUAL, text("a,b"))),
        (
            "c==true",
            QComparison(AttrPath(V + "c"), CompareOp.EQUAL, QLiteral(LiteralKind.BOOLEAN, True)),
        ),
        ("c=='20'", QComparison(AttrPath(V + "c"), CompareOp.EQUAL, text("20"))),
        (
            "d>2024-01-01",
            QComparison(
                AttrPath(V + "d"), CompareOp.GREATER, QLiteral(LiteralKind.DATE_TIME, "2024-01-01")
            ),
        ),
        (
            "c!=urn:x,Room1",
            QComparison(
                AttrPath(V + "c"),
                CompareOp.UNEQUAL,
                QValueList((text("urn:x"), text("Room1"), text("urn:ngsi-v2:Room1"))),
            ),
        ),
        ("a.b.c==1", QComparison(AttrPath(V + "a", keys=("b", "c")), CompareOp.EQUAL, num(1))),
        ("'a.b'.c==1", QComparison(AttrPath(V + "a.b", keys=("c",)), CompareOp.EQUAL, num(1))),
        ("n~=^K", QPattern(AttrPath(V + "n"), "^K")),
        ("n", QExists(AttrPath(V + "n"))),
        ("!n", QExists(AttrPath(V + "n"), negated=True)),
        ("location", QExists(AttrPath("https://uri.etsi.org/ngsi-ld/location"))),
    ],
)
def test_q(q: str, expected: object) -> None:
    assert parse_simple_query(q, NAMES) == [expected]


def test_statements_are_anded() -> None:
    assert len(parse_simple_query("a>1;b;!c", NAMES)) == 3


@pytest.mark.parametrize(
    ("mq", "path"),
    [
        ("t.accuracy>1", AttrPath(V + "t", subattrs=(V + "accuracy",))),
        ("t.unitCode>1", AttrPath(V + "t", member="unitCode")),
        ("t.dateModified>1", AttrPath(V + "t", member="modifiedAt")),
        ("t.m.k>1", AttrPath(V + "t", subattrs=(V + "m",), keys=("k",))),
    ],
)
def test_mq(mq: str, path: AttrPath) -> None:
    assert parse_simple_query(mq, NAMES, metadata=True) == [
        QComparison(path, CompareOp.GREATER, num(1))
    ]


@pytest.mark.parametrize(
    "q", ["", ";", "a>", "a>1,2", "a=='x", "a..b==1", "dateCreated>1", "a~=(("]
)
def test_invalid(q: str) -> None:
    with pytest.raises(BadRequestData):
        parse_simple_query(q, NAMES)


def test_mq_needs_a_metadata_name() -> None:
    with pytest.raises(BadRequestData):
        parse_simple_query("t>1", NAMES, metadata=True)
