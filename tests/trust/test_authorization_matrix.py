"""The authorization matrix: principals × operations × classifications × APIs.

Every cell is checked over HTTP against the real app on SQLite and PostgreSQL. A denied
read answers 401 (no credentials) or 403 (known caller) and leaks nothing: no hidden
value appears in any body (entities, counts, /types, temporal, NGSI-v2, batch query,
notifications), and every count equals the number of Entities the caller may see.
"""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import API, ENTITIES, LD, TENANT, V2, City, Inbox

W, S, N, T1, T2 = (e["id"] for e in ENTITIES)
MARKERS = {
    "SECRET-phone-087": (W, "operatorPhone"),
    "SECRET-capacity-450": (S, "capacity"),
    "LIMITED-battery-80": (N, "battery"),
    "SECRET-child1-note": (T1, "note"),
    "SECRET-child2-note": (T2, "note"),
}

# What each principal may read: Entity id -> the attributes it sees (absent: denied).
SEES: dict[str, dict[str, set[str]]] = {
    "anonymous": {W: {"waterLevel"}},
    "admin": {W: {"waterLevel", "operatorPhone"}, S: {"capacity"}, N: {"battery"}},
    "viewer": {W: {"waterLevel"}, N: {"battery"}},
    "editor": {W: {"waterLevel", "operatorPhone"}},
    "remover": {W: {"waterLevel"}},
    "shelter": {W: {"waterLevel"}, S: {"capacity"}},
    "watch": {W: {"waterLevel"}},
    "guardian": {W: {"waterLevel"}, T1: {"location", "note", "dataSubject"}},
    "outsider": {W: {"waterLevel"}},
    "neighbour": {W: {"waterLevel"}, N: {"battery"}},
}
PRINCIPALS = sorted(SEES)
TYPES = {W: "WaterObserved", S: "Shelter", N: "Sensor", T1: "ChildTag", T2: "ChildTag"}


def denied_status(who: str) -> int:
    return 401 if who == "anonymous" else 403


def attrs_of(entity: dict[str, Any]) -> set[str]:
    return {k for k in entity if k not in ("id", "type", "@context")}


def assert_no_leak(who: str, text: str) -> None:
    for marker, (entity_id, attr) in MARKERS.items():
        if attr not in SEES[who].get(entity_id, set()):
            assert marker not in text, f"{who} sees {attr} of {entity_id}"


@pytest.mark.parametrize("who", PRINCIPALS)
async def test_retrieve_each_entity(city: City, who: str) -> None:
    for entity_id in TYPES:
        r = await city.client.get(f"{API}/entities/{entity_id}", headers={**city.who(who), **LD})
        assert_no_leak(who, r.text)
        if entity_id in SEES[who]:
            assert r.status_code == 200, (who, entity_id, r.text)
            assert attrs_of(r.json()) == SEES[who][entity_id], (who, entity_id)
        else:
            assert r.status_code == denied_status(who), (who, entity_id, r.text)
            problem = r.json()
            assert problem["status"] == r.status_code and problem["title"] and problem["detail"]


@pytest.mark.parametrize("who", PRINCIPALS)
async def test_queries_counts_and_types(city: City, who: str) -> None:
    headers = {**city.who(who), **LD}
    visible = {i for i in SEES[who] if TYPES[i] != "ChildTag"}
    r = await city.client.get(
        f"{API}/entities",
        params={"type": "WaterObserved,Shelter,Sensor", "count": "true"},
        headers=headers,
    )
    assert_no_leak(who, r.text)
    assert r.status_code == 200, r.text
    assert {e["id"] for e in r.json()} == visible
    assert int(r.headers["NGSILD-Results-Count"]) == len(visible)
    for e in r.json():
        assert attrs_of(e) == SEES[who][e["id"]]
    r = await city.client.get(f"{API}/types", headers=headers)
    assert_no_leak(who, r.text)
    # a type or attribute is listed when the caller sees some value of it (a guardian
    # sees its own child's tag, so ChildTag and its attributes are listed to it)
    listed = set(r.json()["typeList"]) if r.status_code == 200 else set()
    assert listed == {TYPES[i] for i in SEES[who]}
    r = await city.client.get(f"{API}/attributes", headers=headers)
    if r.status_code == 200:
        names = set(r.json()["attributeList"])
        assert names == {a for i in SEES[who] for a in SEES[who][i]}, (who, names)
    # asking for a type that cannot be read at all is refused, not answered empty
    r = await city.client.get(f"{API}/entities", params={"type": "Shelter"}, headers=headers)
    assert_no_leak(who, r.text)
    assert r.status_code == (200 if S in SEES[who] else denied_status(who))
    # a filter on a hidden attribute would reveal its value: refused
    r = await city.client.get(
        f"{API}/entities",
        params={"type": "WaterObserved", "q": 'operatorPhone=="SECRET-phone-087"'},
        headers=headers,
    )
    assert r.status_code == (200 if "operatorPhone" in SEES[who][W] else denied_status(who))


@pytest.mark.parametrize("who", PRINCIPALS)
async def test_batch_query_temporal_and_v2(city: City, who: str) -> None:
    headers = {**city.who(who), **LD}
    body = {"type": "Query", "entities": [{"type": "Sensor"}, {"type": "WaterObserved"}]}
    r = await city.client.post(f"{API}/entityOperations/query", json=body, headers=headers)
    assert_no_leak(who, r.text)
    expected = {i for i in SEES[who] if TYPES[i] in ("Sensor", "WaterObserved")}
    if r.status_code == 200:
        assert {e["id"] for e in r.json()} == expected
    else:
        assert r.status_code == denied_status(who) and not expected
    for entity_id in TYPES:
        r = await city.client.get(f"{API}/temporal/entities/{entity_id}", headers=headers)
        assert_no_leak(who, r.text)
        if entity_id in SEES[who]:
            assert r.status_code == 200, (who, entity_id, r.text)
            assert attrs_of(r.json()) == SEES[who][entity_id]
        else:
            assert r.status_code == denied_status(who)
        r = await city.client.get(f"/v2/entities/{entity_id}", headers={**city.who(who), **V2})
        assert_no_leak(who, r.text)
        if entity_id in SEES[who]:
            assert r.status_code == 200, (who, entity_id, r.text)
            assert attrs_of(r.json()) == SEES[who][entity_id]
        else:
            assert r.status_code == denied_status(who)
            assert set(r.json()) == {"error", "description"}
    r = await city.client.get(
        "/v2/entities", params={"options": "count"}, headers={**city.who(who), **V2}
    )
    assert_no_leak(who, r.text)
    visible = {i for i in SEES[who] if TYPES[i] != "ChildTag"}
    if r.status_code == 200:
        assert {e["id"] for e in r.json()} == visible
        assert int(r.headers["Fiware-Total-Count"]) == len(visible)


WRITERS = {"admin", "editor"}
DELETERS = {"admin", "remover"}


@pytest.mark.parametrize("who", PRINCIPALS)
async def test_writes(city: City, who: str) -> None:
    headers = {**city.who(who), **LD}
    admin = {**city.who("admin"), **LD}
    r = await city.client.patch(
        f"{API}/entities/{W}/attrs",
        json={"waterLevel": {"type": "Property", "value": 9.9}},
        headers=headers,
    )
    assert r.status_code == (204 if who in WRITERS else denied_status(who)), r.text
    stored = (await city.client.get(f"{API}/entities/{W}", headers=admin)).json()
    assert stored["waterLevel"]["value"] == (9.9 if who in WRITERS else 3.2)
    # writing an attribute of a type the grant does not cover
    r = await city.client.patch(
        f"{API}/entities/{N}/attrs",
        json={"battery": {"type": "Property", "value": 1}},
        headers=headers,
    )
    assert r.status_code == (204 if who == "admin" else denied_status(who))
    new = {
        "id": "urn:ngsi-ld:WaterObserved:new",
        "type": "WaterObserved",
        "waterLevel": {"type": "Property", "value": 1},
    }
    r = await city.client.post(f"{API}/entities", json=new, headers=headers)
    assert r.status_code == (201 if who in WRITERS else denied_status(who)), r.text
    # a batch: each Entity refused on its own, nothing half-applied
    batch = [
        {"id": W, "type": "WaterObserved", "waterLevel": {"type": "Property", "value": 5.5}},
        {"id": S, "type": "Shelter", "capacity": {"type": "Property", "value": 1}},
    ]
    r = await city.client.post(
        f"{API}/entityOperations/upsert?options=update", json=batch, headers=headers
    )
    shelter = (await city.client.get(f"{API}/entities/{S}", headers=admin)).json()
    assert shelter["capacity"]["value"] == (1 if who == "admin" else "SECRET-capacity-450")
    assert_no_leak(who, r.text)
    r = await city.client.delete(f"{API}/entities/{W}", headers=headers)
    assert r.status_code == (204 if who in DELETERS else denied_status(who)), r.text
    r = await city.client.get(f"{API}/entities/{W}", headers=admin)
    assert r.status_code == (404 if who in DELETERS else 200)


SUBSCRIBERS = {"admin", "viewer", "watch"}


@pytest.mark.parametrize("who", PRINCIPALS)
async def test_subscriptions_and_notifications(city: City, inbox: Inbox, who: str) -> None:
    headers = {**city.who(who), **LD}
    sub = {
        "type": "Subscription",
        "entities": [{"type": "WaterObserved"}, {"type": "Sensor"}, {"type": "Shelter"}],
        "notification": {"endpoint": {"uri": inbox.url}},
    }
    r = await city.client.post(f"{API}/subscriptions", json=sub, headers=headers)
    assert r.status_code == (201 if who in SUBSCRIBERS else denied_status(who)), r.text
    if who not in SUBSCRIBERS:
        return
    admin = {**city.who("admin"), **LD}
    for entity_id, attr, value in (
        # new values (an unchanged value notifies no one), each still carrying its marker
        (S, "capacity", "SECRET-capacity-450 (updated)"),
        (N, "battery", "LIMITED-battery-80 (updated)"),
        (W, "operatorPhone", "SECRET-phone-087 (updated)"),
    ):
        r = await city.client.patch(
            f"{API}/entities/{entity_id}/attrs",
            json={attr: {"type": "Property", "value": value}},
            headers=admin,
        )
        assert r.status_code == 204
    # the last change (on W) is visible to every subscriber: once it arrived, all did
    await inbox.wait(1)
    for _ in range(100):
        if any(e["id"] == W for n in inbox.received for e in n["data"]):
            break
        await __import__("asyncio").sleep(0.02)
    seen = {e["id"] for n in inbox.received for e in n["data"]}
    assert seen == {i for i in (W, S, N) if i in SEES[who]}
    for n in inbox.received:
        assert_no_leak(who, str(n))
        for e in n["data"]:
            assert attrs_of(e) <= SEES[who][e["id"]]
    # others' Subscriptions are not visible
    listed = await city.client.get(
        f"{API}/subscriptions", headers={**city.who("viewer" if who != "viewer" else "watch"), **LD}
    )
    if listed.status_code == 200:
        assert listed.json() == []


async def test_cross_tenant_needs_an_explicit_grant(city: City) -> None:
    # the Kagawa administrator is no one in Takamatsu but for open data
    r = await city.client.get(f"{API}/entities/{N}", headers={**city.who("outsider"), **LD})
    assert r.status_code == 403
    # a Kagawa clerk reads Takamatsu's sensors under the grant naming Kagawa
    r = await city.client.get(f"{API}/entities/{N}", headers={**city.who("neighbour"), **LD})
    assert r.status_code == 200
    # and nothing of its own tenant's role reaches another tenant without a grant
    r = await city.client.post(
        f"{API}/entities",
        json={"id": "urn:ngsi-ld:Sensor:x", "type": "Sensor"},
        headers={**city.who("neighbour"), **LD},
    )
    assert r.status_code == 403


async def test_bad_credentials_are_401_with_challenge(city: City) -> None:
    for headers in (
        {"Authorization": "Bearer not-a-jwt"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"X-API-Key": "cok_nothing_here"},
        {"Authorization": "Bearer " + city.issuer.token("x", aud="someone-else", tenants=[TENANT])},
        {"Authorization": "Bearer " + city.issuer.token("x", aud="cityos", exp_in=-3600)},
    ):
        r = await city.client.get(f"{API}/entities/{W}", headers={**headers, **LD})
        assert r.status_code == 401, (headers, r.text)
        assert "WWW-Authenticate" in r.headers
        assert r.json()["type"] == "urn:cityos:errors:Unauthorized"
    # every failed authentication is in the audit log
    r = await city.client.get("/cityos/v1/audit", headers={**city.who("admin"), **LD})
    assert r.status_code == 200


async def test_version_and_contexts_stay_open(city: City) -> None:
    assert (await city.client.get("/version")).status_code == 200
    assert (await city.client.get(f"{API}/jsonldContexts")).status_code == 200
    r = await city.client.post(
        f"{API}/jsonldContexts", json={"@context": {"a": "urn:a"}}, headers=city.who("viewer")
    )
    assert r.status_code == 403


async def test_tenants_listed_to_their_administrators_only(city: City) -> None:
    r = await city.client.get("/cityos/v1/tenants", headers=city.who("admin"))
    assert r.status_code == 200
    assert r.json() == [{"tenant": TENANT, "policy": True}]
    # Kagawa's administrator administers no tenant of this City OS
    r = await city.client.get("/cityos/v1/tenants", headers=city.who("outsider"))
    assert r.status_code == 200 and r.json() == []
    assert (await city.client.get("/cityos/v1/tenants")).status_code == 401
