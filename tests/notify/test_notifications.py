"""What a Notification carries and how it is counted (clauses 5.2.12, 5.3.1, 5.8.6): the real
app over HTTP, notifying a real aiohttp receiver. Each case is one the ETSI conformance suite
checks (046_*)."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest

from .conftest import Receiver, wait_until

API = "/ngsi-ld/v1"
NULL = "urn:ngsi-ld:null"
TOWER = "urn:ngsi-ld:Building:tower"
PARIS = "urn:ngsi-ld:City:Paris"


async def subscribe(client: httpx.AsyncClient, receiver: Receiver, **members: Any) -> None:
    notification = {"endpoint": {"uri": receiver.url()}, **members.pop("notification", {})}
    body = {
        "id": "urn:ngsi-ld:Subscription:content",
        "type": "Subscription",
        "entities": [{"type": "Building"}],
        "notification": notification,
        **members,
    }
    response = await client.post(f"{API}/subscriptions", json=body)
    assert response.status_code == 201, response.text


async def notified(receiver: Receiver, count: int = 1) -> list[dict[str, Any]]:
    """The ``data`` of the ``count``-th Notification the receiver got."""
    await wait_until(lambda: len(receiver.requests) >= count)
    data: list[dict[str, Any]] = orjson.loads(receiver.requests[count - 1].body)["data"]
    return data


def prop(value: Any, **meta: Any) -> dict[str, Any]:
    return {"type": "Property", "value": value, **meta}


def rel(obj: str) -> dict[str, Any]:
    return {"type": "Relationship", "object": obj}


def entity(entity_id: str, entity_type: str, **attrs: Any) -> dict[str, Any]:
    return {"id": entity_id, "type": entity_type, **attrs}


def names(instances: list[tuple[str, str | None]]) -> list[dict[str, Any]]:
    """Instances of the Property ``name``: (value, datasetId or None)."""
    return [prop(v, **({"datasetId": d} if d else {})) for v, d in instances]


NAMES = [("Eiffel Tower", None), ("Tour Eiffel", "urn:ngsi-ld:Dataset:fr"),
         ("Eiffelturm", "urn:ngsi-ld:Dataset:de")]  # fmt: skip


async def test_key_values_with_sys_attrs_carry_the_entity_times(
    client: httpx.AsyncClient, receiver: Receiver
) -> None:
    await subscribe(client, receiver, notification={"format": "keyValues", "sysAttrs": True})
    await client.post(f"{API}/entities", json=entity(TOWER, "Building", height=prop(300)))
    (data,) = await notified(receiver)
    assert data["height"] == 300
    assert data["createdAt"] == data["modifiedAt"]
    assert data["createdAt"].endswith("Z")


async def test_dataset_id_selects_the_instances_shown(
    client: httpx.AsyncClient, receiver: Receiver
) -> None:
    await subscribe(client, receiver, datasetId=["urn:ngsi-ld:Dataset:fr"])
    tower = entity(TOWER, "Building", name=names(NAMES), height=prop(300))
    await client.post(f"{API}/entities", json=tower)
    (data,) = await notified(receiver)
    assert data == {"id": TOWER, "type": "Building", "name": names([NAMES[1]])[0]}


async def test_a_deleted_attribute_has_deleted_at_with_sys_attrs(
    client: httpx.AsyncClient, receiver: Receiver
) -> None:
    await client.post(f"{API}/entities", json=entity(TOWER, "Building", name=prop("Tower")))
    await subscribe(
        client,
        receiver,
        watchedAttributes=["name"],
        notificationTrigger=["attributeDeleted"],
        notification={"sysAttrs": True},
    )
    assert (await client.delete(f"{API}/entities/{TOWER}/attrs/name")).status_code == 204
    (data,) = await notified(receiver)
    assert data["name"]["value"] == NULL
    assert data["name"]["deletedAt"] > data["name"]["createdAt"]


@pytest.mark.parametrize(
    ("format", "expected"),
    [
        ("normalized", names([NAMES[0], NAMES[2], (NULL, "urn:ngsi-ld:Dataset:fr")])),
        (
            "keyValues",
            {"dataset": {"@none": "Eiffel Tower", "urn:ngsi-ld:Dataset:de": "Eiffelturm",
                         "urn:ngsi-ld:Dataset:fr": NULL}},
        ),
    ],
)  # fmt: skip
async def test_deleting_one_instance_is_an_attribute_deleted(
    client: httpx.AsyncClient, receiver: Receiver, format: str, expected: Any
) -> None:
    # Clause 4.5.5: the instances of a multi-attribute are deleted one by one.
    await client.post(f"{API}/entities", json=entity(TOWER, "Building", name=names(NAMES)))
    await subscribe(
        client,
        receiver,
        watchedAttributes=["name"],
        notificationTrigger=["attributeDeleted"],
        notification={"format": format},
    )
    response = await client.delete(
        f"{API}/entities/{TOWER}/attrs/name", params={"datasetId": "urn:ngsi-ld:Dataset:fr"}
    )
    assert response.status_code == 204
    (data,) = await notified(receiver)
    assert data["name"] == expected


async def test_deleting_the_entity_deletes_the_watched_attribute(
    client: httpx.AsyncClient, receiver: Receiver
) -> None:
    tower = entity(TOWER, "Building", name=prop("Tower"), height=prop(300))
    await client.post(f"{API}/entities", json=tower)
    await subscribe(
        client,
        receiver,
        watchedAttributes=["name"],
        notificationTrigger=["attributeDeleted"],
        notification={"sysAttrs": True},
    )
    assert (await client.delete(f"{API}/entities/{TOWER}")).status_code == 204
    (data,) = await notified(receiver)
    assert set(data) == {"id", "type", "createdAt", "modifiedAt", "deletedAt", "name"}
    assert data["name"]["value"] == NULL
    assert data["name"]["deletedAt"] == data["deletedAt"]


@pytest.mark.parametrize("join", ["flat", "inline"])
async def test_attributes_select_only_on_the_notified_entity(
    client: httpx.AsyncClient, receiver: Receiver, join: str
) -> None:
    city = entity(PARIS, "City", name=prop("Paris"), population=prop(2_100_000))
    await client.post(f"{API}/entities", json=city)
    await subscribe(client, receiver, notification={"join": join, "attributes": ["locatedAt"]})
    tower = entity(TOWER, "Building", name=prop("Tower"), locatedAt=rel(PARIS))
    await client.post(f"{API}/entities", json=tower)
    data = await notified(receiver)
    shown_city = {"id": PARIS, "type": "City", "name": prop("Paris"),
                  "population": prop(2_100_000)}  # fmt: skip
    if join == "flat":
        assert data == [{"id": TOWER, "type": "Building", "locatedAt": rel(PARIS)}, shown_city]
    else:
        assert data == [
            {"id": TOWER, "type": "Building", "locatedAt": {**rel(PARIS), "entity": shown_city}}
        ]


@pytest.mark.parametrize(
    ("projection", "expected"),
    [
        ({"pick": ["id", "name"]}, {"id": TOWER, "name": prop("Tower")}),
        ({"omit": ["type", "name"]}, {"id": TOWER, "height": prop(300)}),
    ],
)
async def test_pick_and_omit_shape_the_notified_entity(
    client: httpx.AsyncClient, receiver: Receiver, projection: Any, expected: Any
) -> None:
    await subscribe(client, receiver, notification=projection)
    tower = entity(TOWER, "Building", name=prop("Tower"), height=prop(300))
    await client.post(f"{API}/entities", json=tower)
    assert await notified(receiver) == [expected]


async def test_times_sent_counts_a_notification_before_it_is_acknowledged(
    client: httpx.AsyncClient, receiver: Receiver
) -> None:
    # A receiver may read the Subscription as soon as the notification arrives (046_11):
    # this one never answers, and the notification is counted all the same.
    receiver.hanging.add("/notify")
    await subscribe(client, receiver)
    await client.post(f"{API}/entities", json=entity(TOWER, "Building", name=prop("Tower")))
    await notified(receiver)
    sub = (await client.get(f"{API}/subscriptions/urn:ngsi-ld:Subscription:content")).json()
    assert sub["notification"]["timesSent"] == 1
    assert "lastSuccess" not in sub["notification"]


async def test_a_deleted_subscription_holds_up_no_other(
    client: httpx.AsyncClient, receiver: Receiver
) -> None:
    # Both Subscriptions notify the same Entity on the same endpoint, so their deliveries
    # share a lane; the failing one's retries (backoff from 0.25 s, doubling) would hold
    # the other back for seconds. Deleting it frees the lane at once.
    receiver.script("/down", *[500] * 10)
    down = {"endpoint": {"uri": receiver.url("/down")}}
    await subscribe(client, receiver, id="urn:ngsi-ld:Subscription:down", notification=down)
    await subscribe(client, receiver)
    await client.post(f"{API}/entities", json=entity(TOWER, "Building", name=prop("Tower")))
    await wait_until(lambda: len(receiver.paths("/down")) == 1)
    deleted = await client.delete(f"{API}/subscriptions/urn:ngsi-ld:Subscription:down")
    assert deleted.status_code == 204
    tries = len(receiver.paths("/down"))
    await wait_until(lambda: len(receiver.paths("/notify")) == 1, timeout=1)
    assert len(receiver.paths("/down")) == tries  # and no retry after the deletion
