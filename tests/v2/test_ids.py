"""The reversible v2 id <-> NGSI-LD id rule (cityos/v2/ids.py)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cityos.core.jsonld import is_absolute_iri
from cityos.v2.ids import IdMapping

IDS = IdMapping("urn:ngsi-v2:")
# v2 field syntax: printable ASCII without whitespace, & ? / # and Orion's forbidden chars.
V2_CHARS = st.sampled_from([c for c in map(chr, range(0x21, 0x7F)) if c not in "&?/#<>\"'=;()"])
V2_IDS = st.text(V2_CHARS, min_size=1, max_size=40)
PREFIXED = st.builds(lambda s: "urn:ngsi-v2:" + s, V2_IDS)


@pytest.mark.parametrize(
    ("v2", "ld"),
    [
        ("Room1", "urn:ngsi-v2:Room1"),
        ("1:abc", "urn:ngsi-v2:1:abc"),
        ("urn:ngsi-ld:Room:1", "urn:ngsi-ld:Room:1"),
        ("urn:ngsi-ld:Room1", "urn:ngsi-ld:Room1"),
        ("http://example.org/r/1", "http://example.org/r/1"),
        ("urn:ngsi-v2:Room1", "urn:ngsi-v2:urn:ngsi-v2:Room1"),
        ("urn:ngsi-v2:urn:x", "urn:ngsi-v2:urn:x"),
    ],
)
def test_examples(v2: str, ld: str) -> None:
    assert IDS.to_ld(v2) == ld


@given(st.one_of(V2_IDS, PREFIXED))
def test_every_v2_id_round_trips(v2_id: str) -> None:
    ld = IDS.to_ld(v2_id)
    assert is_absolute_iri(ld)
    assert IDS.from_ld(ld) == v2_id


@given(st.one_of(V2_IDS, PREFIXED), st.one_of(V2_IDS, PREFIXED))
def test_distinct_v2_ids_stay_distinct(a: str, b: str) -> None:
    assert (IDS.to_ld(a) == IDS.to_ld(b)) == (a == b)


@pytest.mark.parametrize(
    ("pattern", "v2_id", "matches"),
    [
        ("^Room", "Room1", True),
        ("^urn", "Room1", False),
        ("^urn:ngsi-ld", "urn:ngsi-ld:Room:1", True),
        ("ngsi-v2", "Room1", False),
        ("1$", "Room1", True),
        ("^urn:ngsi-v2:R", "urn:ngsi-v2:Room1", True),
        ("^urn:ngsi-v2:R", "Room1", False),
        (".*", "Anything", True),
    ],
)
def test_patterns_match_v2_ids_through_stored_ids(pattern: str, v2_id: str, matches: bool) -> None:
    assert bool(re.search(IDS.pattern(pattern), IDS.to_ld(v2_id))) is matches
    assert bool(re.search(pattern, v2_id)) is matches
