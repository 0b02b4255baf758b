"""Context source registrations in ``core``: parse, render and merge, and their round trips."""

from __future__ import annotations

from importlib import resources
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cityos.core.jsonld import CompiledContext, compile_context
from cityos.core.registrations import (
    Registration,
    merge_registration,
    parse_registration,
    render_registration,
)
from cityos.errors import BadRequestData

NOW = "2026-01-01T00:00:00.000000Z"
EX = "https://example.org/"
_CORE = orjson.loads(
    (
        resources.files("cityos")
        / "contexts/uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld"
    ).read_bytes()
)["@context"]
CORE = compile_context([], _CORE)
USER = compile_context([{"Pegel": EX + "WaterLevel", "stand": EX + "level"}], _CORE)


def _body(**members: Any) -> dict[str, Any]:
    return {
        "id": "urn:ngsi-ld:ContextSourceRegistration:1",
        "type": "ContextSourceRegistration",
        "information": [{"entities": [{"type": "WaterLevel"}]}],
        "endpoint": "http://town-b.example",
        **members,
    }


def _reg(ctx: CompiledContext = CORE, **members: Any) -> Registration:
    return parse_registration(_body(**members), ctx, NOW)


names = st.sampled_from(["Pegel", "stand", "flow", "WaterLevel", "rain", "ex:thing"])
entity_infos = st.fixed_dictionaries(
    {"type": names},
    optional={
        "id": st.sampled_from(["urn:ngsi-ld:WaterLevel:1", "urn:a:b"]),
        "idPattern": st.sampled_from([".*", "^urn:ngsi-ld:Rain:"]),
    },
)
registration_infos = st.fixed_dictionaries(
    {},
    optional={
        "entities": st.lists(entity_infos, min_size=1, max_size=3),
        "propertyNames": st.lists(names, min_size=1, max_size=3),
        "relationshipNames": st.lists(names, min_size=1, max_size=3),
    },
).filter(bool)


@given(
    information=st.lists(registration_infos, min_size=1, max_size=3),
    properties=st.dictionaries(
        names, st.integers(-(2**63), 2**63 - 1) | st.text(max_size=5), max_size=3
    ),
)
def test_rendering_with_the_same_context_parses_back_to_the_same(
    information: list[dict[str, Any]], properties: dict[str, Any]
) -> None:
    reg = parse_registration(_body(information=information, **properties), USER, NOW)
    rendered = render_registration(reg, USER, sys_attrs=False)
    again = parse_registration(rendered, USER, NOW)
    assert again.members == {**reg.members, "mode": "inclusive", "operations": ["federationOps"]}
    assert Registration.from_doc(orjson.loads(orjson.dumps(reg.to_doc()))) == reg


def test_names_are_stored_expanded() -> None:
    reg = _reg(USER, information=[{"entities": [{"type": "Pegel"}], "propertyNames": ["stand"]}])
    assert reg.members["information"] == [
        {"entities": [{"type": EX + "WaterLevel"}], "propertyNames": [EX + "level"]}
    ]
    info = reg.information[0]
    assert info.entities is not None and info.entities[0].type == EX + "WaterLevel"
    assert info.attributes == frozenset({EX + "level"})


def test_merge_replaces_and_removes_members() -> None:
    reg = _reg(expiresAt="2099-01-01T00:00:00Z", town="B", mode="auxiliary")
    later = "2026-01-02T00:00:00.000000Z"
    fragment = {"expiresAt": None, "town": "urn:ngsi-ld:null", "mode": "redirect"}
    merged = merge_registration(reg, fragment, CORE, later)
    assert "expiresAt" not in merged.members and CORE.expand("town") not in merged.members
    assert merged.members["mode"] == "redirect"
    assert (merged.created_at, merged.modified_at) == (NOW, later)


@pytest.mark.parametrize(
    "fragment",
    [
        {"information": None},
        {"endpoint": "urn:ngsi-ld:null"},
        {"id": "urn:ngsi-ld:ContextSourceRegistration:2"},
        {"type": "Subscription"},
        {"@context": "x", "createdAt": NOW},
        "endpoint",
    ],
)
def test_merge_refuses(fragment: Any) -> None:
    with pytest.raises(BadRequestData):
        merge_registration(_reg(), fragment, CORE, NOW)
