"""Personal data under consent, on every read path: a watching-over service ("mimamori")
sees a child's tag only while the guardian's consent is valid; a withdrawal takes effect on
the next request and stops notifications; the guardian reads who accessed the data."""

from __future__ import annotations

import asyncio
from typing import Any

from .conftest import API, ENTITIES, LD, PERSON, V2, City, Inbox

T1, T2 = ENTITIES[3]["id"], ENTITIES[4]["id"]
CONSENT = {
    "subject": PERSON,
    "recipient": "mimamori",
    "purpose": "見守り: tell the guardian where the child's tag is",
    "categories": ["ChildTag"],
}


async def reads(city: City) -> dict[str, Any]:
    """What the service gets from every read path for the two children's tags."""
    h = {**city.who("watch"), **LD}
    c = city.client
    out: dict[str, Any] = {}
    out["retrieve"] = (await c.get(f"{API}/entities/{T1}", headers=h)).status_code
    out["other"] = (await c.get(f"{API}/entities/{T2}", headers=h)).status_code
    r = await c.get(f"{API}/entities", params={"type": "ChildTag", "count": "true"}, headers=h)
    out["query"] = ([e["id"] for e in r.json()], r.headers.get("NGSILD-Results-Count"))
    r = await c.post(
        f"{API}/entityOperations/query",
        json={"type": "Query", "entities": [{"type": "ChildTag"}]},
        headers=h,
    )
    out["batch"] = [e["id"] for e in r.json()]
    out["temporal"] = (await c.get(f"{API}/temporal/entities/{T1}", headers=h)).status_code
    r = await c.get(f"{API}/temporal/entities", params={"type": "ChildTag"}, headers=h)
    out["temporal_query"] = [e["id"] for e in r.json()] if r.status_code == 200 else r.status_code
    out["v2"] = (await c.get(f"/v2/entities/{T1}", headers={**city.who("watch"), **V2})).status_code
    return out


NONE = {
    "retrieve": 403,
    "other": 403,
    "query": ([], "0"),
    "batch": [],
    "temporal": 403,
    "temporal_query": [],
    "v2": 403,
}
RELEASED = {
    "retrieve": 200,
    "other": 403,
    "query": ([T1], "1"),
    "batch": [T1],
    "temporal": 200,
    "temporal_query": [T1],
    "v2": 200,
}


async def move(city: City, lon: float) -> None:
    r = await city.client.patch(
        f"{API}/entities/{T1}/attrs",
        json={
            "location": {
                "type": "GeoProperty",
                "value": {"type": "Point", "coordinates": [lon, 34.3]},
            }
        },
        headers={**city.who("admin"), **LD},
    )
    assert r.status_code == 204, r.text


async def test_consent_grant_withdraw_on_every_read_path(city: City, inbox: Inbox) -> None:
    c, watch, guardian = city.client, {**city.who("watch"), **LD}, {**city.who("guardian"), **LD}
    r = await c.post(
        f"{API}/subscriptions",
        json={
            "type": "Subscription",
            "entities": [{"type": "ChildTag"}],
            "notification": {"endpoint": {"uri": inbox.url}},
        },
        headers=watch,
    )
    assert r.status_code == 201, r.text
    assert await reads(city) == NONE
    await move(city, 134.01)  # not notified: no consent yet

    # the service cannot give itself a consent; the guardian can
    r = await c.post("/cityos/v1/consents", json=CONSENT, headers=watch)
    assert r.status_code == 403
    r = await c.post("/cityos/v1/consents", json=CONSENT, headers=guardian)
    assert r.status_code == 201, r.text
    consent_id = r.json()["id"]
    assert await reads(city) == RELEASED
    await move(city, 134.02)
    await inbox.wait(1)
    assert len(inbox.received) == 1  # the change made before the consent was never sent
    (entity,) = inbox.received[0]["data"]
    assert entity["id"] == T1 and entity["location"]["value"]["coordinates"] == [134.02, 34.3]

    # the service sees its consent; the other child's guardian's data stays hidden
    r = await c.get("/cityos/v1/consents", headers=watch)
    assert [x["id"] for x in r.json()] == [consent_id]

    r = await c.delete(f"/cityos/v1/consents/{consent_id}", headers=guardian)
    assert r.status_code == 204
    assert await reads(city) == NONE  # on the very next request
    await move(city, 134.03)  # withdrawn: not notified
    r = await c.post("/cityos/v1/consents", json=CONSENT, headers=guardian)
    assert r.status_code == 201
    await move(city, 134.04)
    await inbox.wait(2)
    await asyncio.sleep(0.2)
    assert [n["data"][0]["location"]["value"]["coordinates"][0] for n in inbox.received] == [
        134.02,
        134.04,
    ]

    # the guardian reads who accessed the child's data, and the consent history
    r = await c.get(f"/cityos/v1/subjects/{PERSON}/access-log", headers=guardian)
    assert r.status_code == 200
    log = r.json()
    actions = [x["action"] for x in log]
    assert "consent.grant" in actions and "consent.withdraw" in actions
    reads_by_service = [
        x for x in log if x["action"] == "personal.read" and x["detail"]["client"] == "mimamori"
    ]
    assert reads_by_service and all(x["target"] == T1 for x in reads_by_service)
    # the service may not read that log
    r = await c.get(f"/cityos/v1/subjects/{PERSON}/access-log", headers=watch)
    assert r.status_code == 403


async def test_consent_outside_its_validity_releases_nothing(city: City) -> None:
    guardian = {**city.who("guardian"), **LD}
    future = {**CONSENT, "validFrom": "2999-01-01T00:00:00Z"}
    r = await city.client.post("/cityos/v1/consents", json=future, headers=guardian)
    assert r.status_code == 201, r.text
    assert await reads(city) == NONE
    wrong_purpose_category = {**CONSENT, "categories": ["Sensor"]}
    r = await city.client.post("/cityos/v1/consents", json=wrong_purpose_category, headers=guardian)
    assert r.status_code == 201
    assert await reads(city) == NONE


async def test_consent_for_another_recipient_releases_nothing(city: City) -> None:
    guardian = {**city.who("guardian"), **LD}
    r = await city.client.post(
        "/cityos/v1/consents", json={**CONSENT, "recipient": "another-service"}, headers=guardian
    )
    assert r.status_code == 201
    assert await reads(city) == NONE
    # and a guardian cannot consent for a child that is not theirs
    r = await city.client.post(
        "/cityos/v1/consents",
        json={**CONSENT, "subject": "urn:ngsi-ld:Person:child2"},
        headers=guardian,
    )
    assert r.status_code == 403
