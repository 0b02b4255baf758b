"""The query contract: each store selects exactly what ``cityos.core.query.evaluate`` and
``cityos.core.geo`` say, for every operator of q, scopeQ, type selections, idPattern,
attrs and geoQ, on SQLite and on PostgreSQL.

A corpus of varied Entities (numbers, strings, booleans, nulls, arrays, compound values,
typed DateTimes, Relationships, sub-attributes, scopes) is written once per test through
the store's own ``write_many``; each query's result is compared with the evaluator's.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from cityos.core import changes, geo
from cityos.core.model import StoredEntity
from cityos.core.query.evaluate import match_attrs, match_q, match_scope, match_types
from cityos.core.query.projection import parse_attrs
from cityos.core.query.q import expand_q, parse_q
from cityos.core.query.scope import parse_scope_q
from cityos.core.query.typeexpr import expand_types, parse_types
from cityos.storage.base import EntityQuery

VOCAB = "https://ex.org/"
NOW = "2026-01-01T00:00:00.000000Z"
NAMES = ["num", "str", "arr", "dt", "comp", "rel", "quote", "uni", "pct"]
# IRIs that SQL must quote or escape: a quote, non-ASCII, and % (psycopg's placeholder).
ODD_IRIS = {"quote": VOCAB + "it's", "uni": VOCAB + "ünï", "pct": VOCAB + "50%25"}
TIMES = ["2020-01-01T00:00:00Z", "2020-06-01T00:00:00Z", "2021-06-01T12:00:00Z"]
SCALARS: list[Any] = [
    0, 1, 2, 2.5, -1, 10, 1.0, True, False, None, "a", "b", "red", "", "A", "Red", "it's",
    "ünï", *TIMES, "2020-01-01", "12:00:00", "urn:x:1", "urn:x:2",
]  # fmt: skip
SCOPES = ["/a", "/a/b", "/a/b/c", "/a/c", "/b", "/ab", "/a/bc"]


def expand(name: str) -> str:
    return ODD_IRIS.get(name, VOCAB + name)


def _value(r: random.Random, depth: int = 0) -> Any:
    roll = r.random()
    if roll < 0.55 or depth > 1:
        return r.choice(SCALARS)
    if roll < 0.7:
        return {"@type": "DateTime", "@value": r.choice(TIMES)}
    if roll < 0.85:
        return [_value(r, depth + 1) for _ in range(r.randint(0, 3))]
    return {"k": _value(r, depth + 1), "n": {"deep": r.choice(SCALARS)}}


def _instance(r: random.Random, name: str, nested: bool = True) -> dict[str, Any]:
    kind = "Relationship" if name == "rel" and r.random() < 0.8 else "Property"
    instance: dict[str, Any] = {"type": kind, "value": _value(r)}
    if r.random() < 0.3:
        instance["observedAt"] = r.choice(TIMES)
    if r.random() < 0.2:
        instance["unitCode"] = r.choice(["CEL", "KMH"])
    if nested and r.random() < 0.3:
        instance["attrs"] = {expand("sub"): [_instance(r, "sub", nested=False)]}
    return instance


def _entity(seed: int) -> StoredEntity:
    r = random.Random(seed)
    doc: StoredEntity = {
        "id": f"urn:ngsi-ld:Thing:{seed:03}",
        "type": r.sample([expand("T1"), expand("T2"), expand("T3")], r.randint(1, 2)),
        "createdAt": NOW,
        "modifiedAt": NOW,
        "attrs": {expand(n): [_instance(r, n)] for n in NAMES if r.random() < 0.6},
    }
    if r.random() < 0.7:
        doc["scope"] = r.sample(SCOPES, r.randint(1, 2))
    return doc


CORPUS = [_entity(seed) for seed in range(250)]


@pytest.fixture
async def corpus(store: Any) -> Any:
    await store.write_many("city", [(e["id"], changes.create(e)) for e in CORPUS])
    # Another tenant holds the same Entities: none of them may ever be selected.
    await store.write_many("other", [(e["id"], changes.create(e)) for e in CORPUS[:50]])
    return store


async def selected(store: Any, **query: Any) -> list[str]:
    page = await store.query_entities(EntityQuery("city", limit=1000, count=True, **query))
    assert page.count == len(page.entities)
    return [e["id"] for e in page.entities]


def expected(test: Any) -> list[str]:
    return [e["id"] for e in CORPUS if test(e)]


Q_QUERIES = [
    "num", "!num", "num==1", "num==1.0", "num!=1", "num>1", "num>=1", "num<2.5", "num<=0",
    "num==0..2", "num!=0..2", 'num==1,2,"a"', "num!=1,true", "num==true", "num!=false",
    'str=="a"', 'str!="a"', 'str>"A"', 'str<"b"', 'str=="a".."c"', 'str==""', "str~=^a",
    "str!~=^a", "str~=(?i)RED", "str~=ü", "str~='", "arr==1", "arr!=1", 'arr=="red"',
    "arr==0..2", "arr>1", "arr~=^r", "arr!~=^r", "arr==2020-01-01T00:00:00Z",
    "arr!=2020-01-01T00:00:00Z", "dt==2020-01-01T00:00:00Z", "dt!=2020-01-01T00:00:00Z",
    "dt>2020-03-01T00:00:00Z", "dt<=2020-06-01T00:00:00Z",
    "dt==2020-01-01T00:00:00Z..2020-12-31T00:00:00Z", "dt==2020-01-01", "dt>2020-01-01",
    "dt<12:00:01", "dt.observedAt>=2020-06-01T00:00:00Z", 'comp[k]=="a"', "comp[k]==1",
    "comp[n.deep]>0", "comp[n][deep]==2020-01-01", "comp[k][n]", "comp[missing]", "!comp[k]",
    "comp[k]!=1", "comp[k]~=^r", "rel==urn:x:1", "rel!=urn:x:1", 'rel=="urn:x:2"',
    'rel>"urn:x:1"', "rel~=urn:x:\\d", "quote==1", "quote!=\"it's\"", "quote~=it's",
    'uni=="ünï"', "uni>=1", "pct>=0", 'pct=="red"', "num.sub", "num.sub==1",
    'str.sub!="a"', "arr.sub[k]", "rel.sub>0", "dt.sub.observedAt", 'num.unitCode=="CEL"',
    "num.observedAt", "!num.observedAt", "num.sub.unitCode", '(num>1|str=="a");arr',
    'num>1|str=="a";arr', "!num;!str|dt", "(num|str);(arr|dt)",
]  # fmt: skip


async def test_q_selects_what_the_evaluator_matches(corpus: Any) -> None:
    wrong = {}
    for text in Q_QUERIES:
        node = expand_q(parse_q(text), expand)
        want = expected(lambda e, node=node: match_q(e, node))
        got = await selected(corpus, q=node)
        if got != want:
            wrong[text] = (sorted(set(got) - set(want)), sorted(set(want) - set(got)))
    assert wrong == {}


def test_the_q_queries_are_selective() -> None:
    # Guards the corpus: most queries select a proper, non-empty part of it.
    sizes = [
        len(expected(lambda e, t=t: match_q(e, expand_q(parse_q(t), expand)))) for t in Q_QUERIES
    ]
    assert sum(0 < size < len(CORPUS) for size in sizes) > len(Q_QUERIES) * 0.8


SCOPE_QUERIES = ["/a", "/a/#", "/a/+", "/+/b/#", "/#", "/a/b;/a/c", "(/a/b;/a/c),/b", "/a,/ab"]


@pytest.mark.parametrize("text", SCOPE_QUERIES)
async def test_scope_q(corpus: Any, text: str) -> None:
    node = parse_scope_q(text)
    assert await selected(corpus, scope_q=node) == expected(lambda e: match_scope(e, node))


TYPE_QUERIES = ["T1", "T1,T2", "T1|T3", "(T1;T2)", "(T1;T2),T3", "T4"]


@pytest.mark.parametrize("text", TYPE_QUERIES)
async def test_type_selection(corpus: Any, text: str) -> None:
    node = expand_types(parse_types(text), expand)
    assert await selected(corpus, types=node) == expected(lambda e: match_types(e, node))


async def test_ids_id_pattern_and_attrs(corpus: Any) -> None:
    wanted = ["urn:ngsi-ld:Thing:007", "urn:ngsi-ld:Thing:003", "urn:nope"]
    assert await selected(corpus, ids=wanted) == ["urn:ngsi-ld:Thing:003", "urn:ngsi-ld:Thing:007"]
    assert await selected(corpus, id_pattern=r"Thing:0[0-4]\d$") == [e["id"] for e in CORPUS[:50]]
    attrs = parse_attrs("rel,uni,pct")
    names = frozenset(expand(n) for n in attrs.names())
    held = [e["id"] for e in CORPUS if set(e["attrs"]) & names]
    assert held and await selected(corpus, attrs=sorted(names)) == held
    assert held == expected(lambda e: match_attrs(e, parse_attrs(",".join(sorted(names)))))


async def test_filters_combine(corpus: Any) -> None:
    q = expand_q(parse_q("num>=1"), expand)
    types = expand_types(parse_types("T1"), expand)
    scope = parse_scope_q("/a/#")
    want = expected(lambda e: match_q(e, q) and match_types(e, types) and match_scope(e, scope))
    assert want
    assert await selected(corpus, q=q, types=types, scope_q=scope, id_pattern="Thing") == want


# -- geoQ (clause 4.10): every relation, every geometry type --------------------------

PLACES: dict[str, dict[str, Any]] = {
    "urn:p:station": {"type": "Point", "coordinates": [134.046, 34.351]},
    "urn:p:castle": {"type": "Point", "coordinates": [134.0525, 34.3505]},
    "urn:p:far": {"type": "Point", "coordinates": [135.5, 34.7]},
    "urn:p:road": {"type": "LineString", "coordinates": [[134.04, 34.34], [134.06, 34.36]]},
    "urn:p:park": {
        "type": "Polygon",
        "coordinates": [[[134.05, 34.34], [134.06, 34.34], [134.06, 34.35], [134.05, 34.34]]],
    },
    "urn:p:stops": {"type": "MultiPoint", "coordinates": [[134.0, 34.3], [134.047, 34.351]]},
    "urn:p:lines": {
        "type": "MultiLineString",
        "coordinates": [[[133.0, 34.0], [133.1, 34.1]], [[134.0, 34.2], [134.1, 34.2]]],
    },
    "urn:p:islands": {
        "type": "MultiPolygon",
        "coordinates": [
            [[[134.0, 34.4], [134.1, 34.4], [134.1, 34.5], [134.0, 34.4]]],
            [[[133.0, 33.0], [133.1, 33.0], [133.1, 33.1], [133.0, 33.0]]],
        ],
    },
}
AREA = [[[134.03, 34.33], [134.07, 34.33], [134.07, 34.37], [134.03, 34.37], [134.03, 34.33]]]
GEO_QUERIES = [
    ("near;maxDistance==800", "Point", [134.046, 34.351]),
    ("near;maxDistance==100000", "Point", [134.046, 34.351]),
    ("near;minDistance==5000", "Point", [134.046, 34.351]),
    ("within", "Polygon", AREA),
    ("contains", "Point", [134.046, 34.351]),
    ("contains", "Point", [134.055, 34.342]),
    ("intersects", "Polygon", AREA),
    ("intersects", "LineString", [[134.0, 34.35], [134.1, 34.35]]),
    ("disjoint", "Polygon", AREA),
    ("equals", "Point", [134.0525, 34.3505]),
    (
        "overlaps",
        "Polygon",
        [[[134.055, 34.3], [134.2, 34.3], [134.2, 34.6], [134.055, 34.6], [134.055, 34.3]]],
    ),
    (
        "within",
        "MultiPolygon",
        [AREA, [[[133.0, 33.0], [133.2, 33.0], [133.2, 33.2], [133.0, 33.0]]]],
    ),
    ("near;maxDistance==2000", "MultiPoint", [[134.0, 34.3], [135.5, 34.7]]),
]


def _place(entity_id: str, geometry: dict[str, Any]) -> StoredEntity:
    return {
        "id": entity_id,
        "type": [expand("Place")],
        "createdAt": NOW,
        "modifiedAt": NOW,
        "attrs": {
            expand("location"): [{"type": "GeoProperty", "value": geometry}],
            expand("name"): [{"type": "Property", "value": entity_id}],
        },
    }


@pytest.fixture
async def places(store: Any) -> Any:
    await store.write_many("city", [(i, changes.create(_place(i, g))) for i, g in PLACES.items()])
    await store.write("city", "urn:p:nowhere", changes.create(_entity(0) | {"id": "urn:p:nowhere"}))
    return store


@pytest.mark.parametrize(("georel", "geometry", "coordinates"), GEO_QUERIES)
async def test_geo_relations(places: Any, georel: str, geometry: str, coordinates: Any) -> None:
    gq = geo.parse_geoq(georel, geometry, coordinates, "location")
    assert gq is not None
    gq = gq.with_property_iri(expand("location"))
    hits = [(i, _place(i, g)) for i, g in PLACES.items() if geo.matches_entity(gq, _place(i, g))]
    if gq.georel == "near":  # nearest first
        hits.sort(key=lambda hit: geo.entity_distance_m(gq, hit[1]) or 0.0)
    got = await selected(places, geo=gq, geoproperty=expand("location"))
    assert got == [i for i, _ in hits]


async def test_geo_pages_and_moves(places: Any) -> None:
    gq = geo.parse_geoq("near;maxDistance==100000", "Point", [134.046, 34.351], "location")
    assert gq is not None
    query = dict(geo=gq, geoproperty=expand("location"))
    everything = await selected(places, **query)
    page = await places.query_entities(EntityQuery("city", limit=2, offset=1, count=True, **query))
    assert [e["id"] for e in page.entities] == everything[1:3]
    assert page.count == len(everything)

    moved = _place("urn:p:station", {"type": "Point", "coordinates": [140.0, 40.0]})
    await places.write("city", "urn:p:station", changes.replace(moved))
    assert "urn:p:station" not in await selected(places, **query)
    await places.write("city", "urn:p:castle", changes.delete("urn:p:castle"))
    assert "urn:p:castle" not in await selected(places, **query)
