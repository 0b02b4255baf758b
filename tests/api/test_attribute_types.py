"""Every attribute type round-trips through create and retrieve, in each representation
(GS CIM 009 V1.8.1 clauses 4.5.2-4.5.21: Property, Relationship, GeoProperty,
LanguageProperty, JsonProperty, ListProperty, ListRelationship, VocabProperty)."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from .helpers import create, prop, retrieve

ID = "urn:ngsi-ld:Thing:types"
POLYGON = {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]]}

# (attribute, normalized, keyValues)
ATTRIBUTES: list[tuple[str, dict[str, Any], Any]] = [
    ("plain", prop(12.5), 12.5),
    (
        "observed",
        prop(20.5, observedAt="2026-03-01T09:00:00Z", unitCode="CEL"),
        20.5,
    ),
    (
        "withSubAttributes",
        prop(
            3,
            accuracy=prop(0.1, unitCode="C62"),
            measuredBy={"type": "Relationship", "object": "urn:ngsi-ld:Device:7"},
        ),
        3,
    ),
    (
        "compound",
        prop({"street": "Ekimae 1", "city": "Takamatsu"}),
        {"street": "Ekimae 1", "city": "Takamatsu"},
    ),
    (
        "typedLiteral",
        prop({"@type": "DateTime", "@value": "2026-01-01T00:00:00Z"}),
        {"@type": "DateTime", "@value": "2026-01-01T00:00:00Z"},
    ),
    (
        "isIn",
        {"type": "Relationship", "object": "urn:ngsi-ld:Building:1"},
        "urn:ngsi-ld:Building:1",
    ),
    (
        "passengers",
        {
            "type": "Relationship",
            "objectType": "Person",
            "object": ["urn:ngsi-ld:Person:Alice", "urn:ngsi-ld:Person:Bob"],
        },
        ["urn:ngsi-ld:Person:Alice", "urn:ngsi-ld:Person:Bob"],
    ),
    (
        "location",
        {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [134.05, 34.34]}},
        {"type": "Point", "coordinates": [134.05, 34.34]},
    ),
    ("area", {"type": "GeoProperty", "value": POLYGON}, POLYGON),
    (
        "name",
        {"type": "LanguageProperty", "languageMap": {"en": "Castle", "ja": "玉藻城"}},
        {"languageMap": {"en": "Castle", "ja": "玉藻城"}},
    ),
    (
        "config",
        {
            "type": "JsonProperty",
            "json": {"type": "not-an-ngsi-ld-type", "value": [1, {"nested": None}]},
        },
        {"json": {"type": "not-an-ngsi-ld-type", "value": [1, {"nested": None}]}},
    ),
    ("readings", {"type": "ListProperty", "valueList": [300, 300, 120]}, [300, 300, 120]),
    (
        "route",
        {
            "type": "ListRelationship",
            "objectList": [
                {"object": "urn:ngsi-ld:City:Antwerp"},
                {"object": "urn:ngsi-ld:City:Rotterdam"},
            ],
        },
        {
            "objectList": [
                {"object": "urn:ngsi-ld:City:Antwerp"},
                {"object": "urn:ngsi-ld:City:Rotterdam"},
            ]
        },
    ),
    ("category", {"type": "VocabProperty", "vocab": "Stable"}, {"vocab": "Stable"}),
    (
        "categories",
        {"type": "VocabProperty", "vocab": ["Stable", "Open"]},
        {"vocab": ["Stable", "Open"]},
    ),
]
NAMES = [a[0] for a in ATTRIBUTES]
CONCISE_CASES = [pytest.param(*a, id=a[0]) for a in ATTRIBUTES]


@pytest.mark.parametrize(("name", "normalized", "key_values"), ATTRIBUTES, ids=NAMES)
async def test_attribute_round_trips(
    client: httpx.AsyncClient, name: str, normalized: dict[str, Any], key_values: Any
) -> None:
    await create(client, {"id": ID, "type": "Thing", name: normalized})
    assert (await retrieve(client, ID))[name] == normalized
    assert (await retrieve(client, ID, options="keyValues"))[name] == key_values


@pytest.mark.parametrize(("name", "normalized", "key_values"), CONCISE_CASES)
async def test_concise_form_is_accepted_and_gives_the_same_attribute(
    client: httpx.AsyncClient, name: str, normalized: dict[str, Any], key_values: Any
) -> None:
    await create(client, {"id": ID, "type": "Thing", name: normalized})
    concise = (await retrieve(client, ID, options="concise"))[name]
    await create(client, {"id": ID + ":copy", "type": "Thing", name: concise})
    assert (await retrieve(client, ID + ":copy"))[name] == normalized


async def test_all_types_on_one_entity(client: httpx.AsyncClient) -> None:
    body = {"id": ID, "type": "Thing", **{name: normalized for name, normalized, _ in ATTRIBUTES}}
    await create(client, body)
    assert await retrieve(client, ID) == body


_TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)
_SCALARS = (
    st.booleans()
    | st.integers(min_value=-(2**53), max_value=2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _TEXT
)
JSON_VALUES = st.recursive(
    _SCALARS | st.none(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_TEXT, children, max_size=4),
    max_leaves=12,
).filter(lambda v: v is not None)


@hypothesis_settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(value=JSON_VALUES, observed=st.booleans())
async def test_any_json_value_round_trips(
    client: httpx.AsyncClient, value: Any, observed: bool
) -> None:
    entity_id = f"urn:ngsi-ld:Thing:{uuid.uuid4().hex}"
    attribute = prop(value, observedAt="2026-01-01T00:00:00Z") if observed else prop(value)
    await create(client, {"id": entity_id, "type": "Thing", "reading": attribute})
    assert (await retrieve(client, entity_id))["reading"] == attribute
    assert (await retrieve(client, entity_id, options="keyValues"))["reading"] == value
