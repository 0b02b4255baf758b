"""Tests of cityos/core/query/evaluate.py: matching stored Entities (GS CIM 009, 4.9)."""

from __future__ import annotations

from typing import Any

import pytest

from cityos.core.model import StoredEntity
from cityos.core.query.evaluate import match_attrs, match_q, match_scope, match_types
from cityos.core.query.projection import parse_attrs
from cityos.core.query.q import expand_q, parse_q
from cityos.core.query.scope import parse_scope_q
from cityos.core.query.typeexpr import expand_types, parse_types


def iri(term: str) -> str:
    return "urn:a:" + term


def prop(value: Any, **members: Any) -> list[dict[str, Any]]:
    return [{"type": "Property", "value": value, **members}]


ENTITY: StoredEntity = {
    "id": "urn:e:1",
    "type": [iri("Vehicle"), iri("Car")],
    "scope": ["/Madrid/Gardens/ParqueNorte", "/CompanyA"],
    "attrs": {
        iri("speed"): prop(80, observedAt="2020-01-01T10:00:00Z", unitCode="KMH"),
        iri("name"): prop("Mercedes"),
        iri("colors"): prop(["blue", "red", 3]),
        iri("parked"): prop(False),
        iri("nothing"): prop(None),
        iri("address"): prop({"city": "Berlin", "geo": {"zip": 10115}}),
        iri("seen"): prop({"@type": "DateTime", "@value": "2021-05-01T00:00:00Z"}),
        iri("day"): prop("2021-05-01"),
        iri("owner"): [{"type": "Relationship", "value": "urn:ngsi-ld:Person:Bob"}],
        iri("sensor"): [
            {
                "type": "Property",
                "value": 40,
                "attrs": {iri("rawdata"): prop({"airquality": {"particulate": 40}})},
            }
        ],
        iri("ghost"): [
            {"type": "Property", "value": 1},
            {"type": "Property", "value": 2, "datasetId": "urn:d"},
        ],
    },
}


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        ("speed", True),
        ("missing", False),
        ("!missing", True),
        ("!speed", False),
        ("speed==80", True),
        ("speed==80.0", True),
        ('speed=="80"', False),
        ("speed!=80", False),
        ("speed!=81", True),
        ('speed!="80"', True),  # kinds differ: unequal (clause 4.9)
        ("missing!=1", False),  # != needs the target to exist
        ("speed>79;speed<81", True),
        ("speed>=80;speed<=80", True),
        ("speed>80|speed<80", False),
        ("speed==1..80", True),
        ("speed==81..100", False),
        ("speed!=81..100", True),
        ("speed==1,2,80", True),
        ("speed!=1,2,80", False),
        ('name=="Mercedes"', True),
        ('name>"Audi"', True),
        ('name=="Audi".."Opel"', True),
        ("name~=^Mer", True),
        ("name~=(?i)MERC", True),
        ("name!~=^Mer", False),
        ("name!~=^Audi", True),
        ("speed~=8", False),  # patterns never match a number
        ("speed!~=8", False),
        ('colors=="red"', True),  # == matches an element of an array
        ("colors==3", True),
        ('colors=="green","red"', True),
        ('colors!="red"', False),
        ('colors!="green"', True),
        ("colors==1..5", True),
        ('colors>"a"', False),  # ordering never matches an array
        ("colors~=^re", True),
        ("colors!~=^re", False),
        ("colors!~=^gr", True),
        ("parked==false", True),
        ("parked==true", False),
        ("parked==0", False),  # a number never matches a boolean
        ("parked!=true", True),
        ("nothing", True),
        ("nothing!=1", True),
        ("nothing==1", False),
        ('address[city]=="Berlin"', True),
        ("address[geo.zip]==10115", True),
        ("address[geo][zip]==10115", True),
        ("address[geo.zip]>10000", True),
        ("address[country]", False),
        ("address[country]!=1", False),
        ("address[city][x]", False),
        ("seen==2021-05-01T00:00:00Z", True),  # a typed literal compares by its @value
        ("seen>2021-01-01T00:00:00Z", True),
        ('seen=="2021-05-01T00:00:00Z"', False),  # a string literal does not unwrap it
        ("day==2021-05-01", True),
        ("day>=2021-05-01T00:00:00Z", False),  # string order: "2021-05-01" < "2021-05-01T..."
        ("day<2021-06-01", True),
        ("speed.observedAt>=2020-01-01T00:00:00Z", True),
        ("speed.observedAt<2020-01-01T00:00:00Z", False),
        ('speed.unitCode=="KMH"', True),
        ("speed.modifiedAt", False),
        ("name.observedAt", False),
        ("owner==urn:ngsi-ld:Person:Bob", True),
        ('owner=="urn:ngsi-ld:Person:Bob"', True),
        ("owner!=urn:ngsi-ld:Person:Alice", True),
        ('owner>"urn:a"', False),  # a Relationship only meets == and != (clause 4.9)
        ("owner~=Bob", True),
        ("sensor.rawdata", True),
        ("sensor.rawdata[airquality.particulate]==40", True),
        ("sensor.other", False),
        ("ghost==2", False),  # only the default (first) instance is queried
        ("(speed==1|name~=Merc);parked==false", True),
        ("speed==1|name~=Merc;parked==true", False),
    ],
)
def test_match_q(q: str, expected: bool) -> None:
    assert match_q(ENTITY, expand_q(parse_q(q), iri)) is expected


@pytest.mark.parametrize(
    ("scope_q", "expected"),
    [
        ("/Madrid", False),
        ("/Madrid/#", True),
        ("/Madrid/Gardens/ParqueNorte", True),
        ("/Madrid/+/ParqueNorte", True),
        ("/+", True),
        ("/+/+/+/+", False),
        ("/#", True),
        ("(/Madrid/#;/CompanyA)", True),
        ("(/Madrid/#;/CompanyB)", False),
        ("/CompanyB,/CompanyA", True),
    ],
)
def test_match_scope(scope_q: str, expected: bool) -> None:
    assert match_scope(ENTITY, parse_scope_q(scope_q)) is expected


def test_match_scope_without_scopes() -> None:
    assert not match_scope({"id": "urn:e:2", "attrs": {}}, parse_scope_q("/#"))


@pytest.mark.parametrize(
    ("types", "expected"),
    [
        ("Vehicle", True),
        ("Bike", False),
        ("Bike,Car", True),
        ("(Vehicle;Car)", True),
        ("(Vehicle;Bike)|Truck", False),
        ("(Bike|Car);Vehicle", True),
    ],
)
def test_match_types(types: str, expected: bool) -> None:
    assert match_types(ENTITY, expand_types(parse_types(types), iri)) is expected


def test_match_attrs() -> None:
    assert match_attrs(ENTITY, parse_attrs(f"{iri('nope')},{iri('speed')}"))
    assert not match_attrs(ENTITY, parse_attrs(f"{iri('nope')}"))
