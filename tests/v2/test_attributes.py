"""v2 attributes <-> stored instances (cityos/v2/attributes.py): the round trip is exact."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cityos.errors import BadRequestData
from cityos.v2.attributes import parse_attribute, parse_value, render_attribute, v2_type_and_value

from .helpers import default_names

NAMES = default_names()
NOW = "2026-01-01T00:00:00.000000Z"
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**53), 2**53),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
# Any v2 type takes any value, except those City OS checks (DateTime, geo:*, a
# Relationship's string), which have their own cases below.
FREE_TYPES = st.one_of(
    st.sampled_from(["Number", "Text", "Boolean", "StructuredValue", "None", "Float", "Integer"]),
    st.from_regex(r"\A[A-Za-z][A-Za-z0-9:_.-]{0,20}\Z"),
).filter(lambda t: t not in ("DateTime", "Relationship") and not t.startswith("geo:"))


@given(FREE_TYPES, JSON)
def test_any_type_and_value_round_trips(v2_type: str, value: Any) -> None:
    assert v2_type_and_value(parse_value(v2_type, value, NAMES, NOW), NAMES) == (v2_type, value)


@given(JSON.filter(lambda v: not isinstance(v, str)))
def test_relationships_to_non_ids_round_trip(value: Any) -> None:
    inst = parse_value("Relationship", value, NAMES, NOW)
    assert v2_type_and_value(inst, NAMES) == ("Relationship", value)


@pytest.mark.parametrize(
    ("v2_type", "value", "ld_type"),
    [
        ("DateTime", "2024-01-01", "Property"),
        ("DateTime", "2024-01-01T10:00:00.123+09:00", "Property"),
        ("Relationship", "Room1", "Relationship"),
        ("Relationship", "urn:ngsi-ld:Room:1", "Relationship"),
        ("geo:json", {"type": "LineString", "coordinates": [[1, 2], [3, 4]]}, "GeoProperty"),
        ("geo:point", "35.0,139.5", "GeoProperty"),
        ("geo:line", ["1, 2", "3, 4"], "GeoProperty"),
        ("geo:box", ["1, 2", "3, 4"], "GeoProperty"),
        ("geo:polygon", ["0, 0", "0, 1", "1, 1", "0, 0"], "GeoProperty"),
        ("Text", "urn:ngsi-ld:null", "Property"),
        ("Number", {"@type": "DateTime", "@value": "x"}, "Property"),
    ],
)
def test_checked_types_round_trip(v2_type: str, value: Any, ld_type: str) -> None:
    inst = parse_value(v2_type, value, NAMES, NOW)
    assert inst["type"] == ld_type
    assert v2_type_and_value(inst, NAMES) == (v2_type, value)


@pytest.mark.parametrize(
    ("v2_type", "value"),
    [
        ("DateTime", 5),
        ("DateTime", "2024-13"),
        ("geo:point", "1"),
        ("geo:point", [1, 2]),
        ("geo:line", ["1, 2"]),
        ("geo:box", ["1, 2", "3, 4", "5, 6"]),
        ("geo:polygon", ["0, 0", "0, 1", "1, 1", "1, 0"]),
        ("geo:json", {"type": "Point", "coordinates": [200, 0]}),
        ("Relationship", "has space"),
        ("bad type", 1),
    ],
)
def test_invalid_values_are_refused(v2_type: str, value: Any) -> None:
    with pytest.raises(BadRequestData):
        parse_value(v2_type, value, NAMES, NOW)


def test_metadata_round_trip() -> None:
    body = {
        "type": "Number",
        "value": 1,
        "metadata": {
            "unitCode": {"type": "Text", "value": "CEL"},
            "observedAt": {"type": "DateTime", "value": "2024-01-01T00:00:00Z"},
            "accuracy": {"type": "Float", "value": 0.5},
            "source": {"type": "Relationship", "value": "Sensor1"},
        },
    }
    inst = parse_attribute("t", body, NAMES, NOW)
    assert (inst["unitCode"], inst["observedAt"]) == ("CEL", "2024-01-01T00:00:00Z")
    assert render_attribute(inst, NAMES) == body
    shown = render_attribute(inst, NAMES, ["accuracy", "dateCreated"])
    assert set(shown["metadata"]) == {"accuracy", "dateCreated"}
    assert shown["metadata"]["dateCreated"] == {
        "type": "DateTime",
        "value": "2026-01-01T00:00:00.000Z",
    }
