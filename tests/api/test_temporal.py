"""The Temporal API end to end: /ngsi-ld/v1/temporal (GS CIM 009 V1.8.1 clauses 5.6.11-5.6.16,
5.7.3, 5.7.4, 4.5.7, 4.5.9, 6.3.10).

History comes from two sides: every write through /entities records the instances it
changes, and the temporal provision endpoints write instances directly. Aggregation has its
own file, test_temporal_aggregation.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from cityos.app import build_app
from cityos.config import Settings

from .helpers import API, BASE_URL, ERRORS, client_for, create, entity, point, prop, rel, retrieve

TEMPORAL = f"{API}/temporal/entities"
TEMPORAL_QUERY = f"{API}/temporal/entityOperations/query"
SENSOR = "urn:ngsi-ld:Sensor:1"
GPS = "urn:ngsi-ld:Dataset:gps"
NULL = "urn:ngsi-ld:null"


def at(hour: int, minute: int = 0, day: int = 1) -> str:
    return f"2026-01-{day:02d}T{hour:02d}:{minute:02d}:00Z"


def history(attr: str, points: list[tuple[Any, str]], **meta: Any) -> dict[str, Any]:
    """A temporal Entity body with one attribute given as instances (value, observedAt)."""
    return {
        "id": meta.pop("entity_id", SENSOR),
        "type": meta.pop("entity_type", "Sensor"),
        attr: [prop(v, observedAt=t, **meta) for v, t in points],
    }


async def temporal(
    client: httpx.AsyncClient, entity_id: str = SENSOR, **params: str
) -> dict[str, Any]:
    response = await client.get(f"{TEMPORAL}/{entity_id}", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def values(
    client: httpx.AsyncClient, attr: str, entity_id: str = SENSOR, **params: str
) -> list[list[Any]]:
    """The [value, time] pairs of one attribute with one series (options=temporalValues)."""
    body = await temporal(client, entity_id, options="temporalValues", **params)
    pairs: list[list[Any]] = body[attr]["values"]
    return pairs


async def post_temporal(
    client: httpx.AsyncClient, body: dict[str, Any], **kwargs: Any
) -> httpx.Response:
    response = await client.post(TEMPORAL, json=body, **kwargs)
    assert response.status_code in (201, 204), response.text
    return response


def assert_problem(response: httpx.Response, status: int, problem: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["type"] == ERRORS + problem
    assert body["status"] == status
    assert body["title"] and body["detail"]


# -- history recorded by the core API ----------------------------------------------------


async def test_create_and_updates_are_recorded_as_instances_in_time_order(
    client: httpx.AsyncClient,
) -> None:
    await create(client, entity(SENSOR, "Sensor", speed=prop(0, observedAt=at(0))))
    for hour in (1, 2, 3):
        response = await client.patch(
            f"{API}/entities/{SENSOR}/attrs", json={"speed": prop(hour * 10, observedAt=at(hour))}
        )
        assert response.status_code == 204
    body = await temporal(client)
    instances = body["speed"]
    assert [(i["value"], i["observedAt"]) for i in instances] == [
        (0, at(0)),
        (10, at(1)),
        (20, at(2)),
        (30, at(3)),
    ]
    ids = [i["instanceId"] for i in instances]
    assert len(set(ids)) == 4 and all(i.startswith("urn:") for i in ids)
    assert body["id"] == SENSOR and body["type"] == "Sensor"


NEW = prop(1, observedAt=at(1))
CORE_WRITES = [
    ("PATCH", "/entities/{id}/attrs", {"n": NEW}),
    ("PATCH", "/entities/{id}/attrs/n", {"value": 1, "observedAt": at(1)}),
    ("PUT", "/entities/{id}/attrs/n", NEW),
    ("POST", "/entities/{id}/attrs", {"n": NEW}),
    ("PATCH", "/entities/{id}", {"n": NEW}),
    ("PUT", "/entities/{id}", {"type": "Thing", "n": NEW}),
    ("POST", "/entityOperations/upsert", [entity(SENSOR, n=NEW)]),
    ("POST", "/entityOperations/update", [entity(SENSOR, n=NEW)]),
    ("POST", "/entityOperations/merge", [entity(SENSOR, n=NEW)]),
]


@pytest.mark.parametrize(
    ("method", "path", "body"), CORE_WRITES, ids=[f"{m} {p}" for m, p, _ in CORE_WRITES]
)
async def test_every_core_write_records_the_changed_instance(
    client: httpx.AsyncClient, method: str, path: str, body: Any
) -> None:
    await create(client, entity(SENSOR, n=prop(0, observedAt=at(0))))
    response = await client.request(method, API + path.format(id=SENSOR), json=body)
    assert response.status_code < 300, response.text
    assert await values(client, "n") == [[0, at(0)], [1, at(1)]]


async def test_attributes_left_unchanged_by_an_update_get_no_new_instance(
    client: httpx.AsyncClient,
) -> None:
    await create(client, entity(SENSOR, a=prop(1, observedAt=at(0)), b=prop(1, observedAt=at(0))))
    await client.patch(f"{API}/entities/{SENSOR}/attrs", json={"b": prop(2, observedAt=at(1))})
    assert await values(client, "a") == [[1, at(0)]]
    assert await values(client, "b") == [[1, at(0)], [2, at(1)]]


async def test_batch_create_records_only_the_entities_that_were_created(
    client: httpx.AsyncClient,
) -> None:
    good = entity("urn:ngsi-ld:Thing:good", n=prop(1, observedAt=at(0)))
    bad = entity("urn:ngsi-ld:Thing:bad", n=prop(1, observedAt=at(0)), r=rel("not a uri"))
    response = await client.post(f"{API}/entityOperations/create", json=[good, bad])
    assert response.status_code == 207
    assert await values(client, "n", good["id"]) == [[1, at(0)]]
    missing = await client.get(f"{TEMPORAL}/{bad['id']}")
    assert_problem(missing, 404, "ResourceNotFound")


async def test_deleting_an_attribute_records_a_deletion_seen_only_by_deleted_at(
    client: httpx.AsyncClient,
) -> None:
    await create(client, entity(SENSOR, n=prop(1, observedAt=at(0)), m=prop(2)))
    before = (await temporal(client, options="sysAttrs"))["modifiedAt"]
    assert (await client.delete(f"{API}/entities/{SENSOR}/attrs/n")).status_code == 204
    deletions = (await temporal(client, timeproperty="deletedAt"))["n"]
    assert len(deletions) == 1
    assert deletions[0]["value"] == NULL
    assert deletions[0]["deletedAt"] >= before
    assert "instanceId" in deletions[0]
    # The default time property (observedAt) shows the history, not the deletion.
    assert [i["value"] for i in (await temporal(client))["n"]] == [1]
    assert "n" not in (await temporal(client, timeproperty="deletedAt", attrs="m"))


async def test_deleting_the_entity_keeps_its_history(client: httpx.AsyncClient) -> None:
    await create(client, entity(SENSOR, n=prop(1, observedAt=at(0))))
    await client.patch(f"{API}/entities/{SENSOR}/attrs", json={"n": prop(2, observedAt=at(1))})
    assert (await client.delete(f"{API}/entities/{SENSOR}")).status_code == 204
    assert await values(client, "n") == [[1, at(0)], [2, at(1)]]
    body = await temporal(client, options="sysAttrs")
    assert body["deletedAt"] >= body["createdAt"]


async def test_rejected_update_leaves_the_history_unchanged(client: httpx.AsyncClient) -> None:
    await create(client, entity(SENSOR, n=prop(1, observedAt=at(0))))
    before = await temporal(client, options="sysAttrs")
    response = await client.patch(
        f"{API}/entities/{SENSOR}/attrs", json={"n": prop(2, observedAt="not a time")}
    )
    assert_problem(response, 400, "BadRequestData")
    assert await temporal(client, options="sysAttrs") == before


async def test_no_history_is_kept_when_temporal_history_is_off(tmp_path: Path) -> None:
    # build_app opens its own store from the settings (client_for passes one that keeps history).
    app = build_app(Settings(data_dir=tmp_path, durable=False, temporal_history=False))
    await app.state.startup()
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
            await create(client, entity(SENSOR, n=prop(1, observedAt=at(0))))
            await client.patch(f"{API}/entities/{SENSOR}/attrs", json={"n": prop(2)})
            assert_problem(await client.get(f"{TEMPORAL}/{SENSOR}"), 404, "ResourceNotFound")
    finally:
        await app.state.shutdown()


# -- temporal provision --------------------------------------------------------------------


async def test_post_temporal_entity_creates_history_and_the_current_entity(
    client: httpx.AsyncClient,
) -> None:
    points = [(5, at(2)), (3, at(0)), (4, at(1))]
    response = await post_temporal(client, history("speed", points))
    assert response.status_code == 201
    assert response.headers["location"] == f"{TEMPORAL}/{SENSOR}"
    assert await values(client, "speed") == [[v, t] for v, t in sorted(points, key=lambda p: p[1])]
    newest = max(points, key=lambda p: p[1])
    current = await retrieve(client, SENSOR)
    assert current["speed"] == prop(newest[0], observedAt=newest[1])


async def test_post_temporal_entity_again_is_204_and_adds_instances(
    client: httpx.AsyncClient,
) -> None:
    await post_temporal(client, history("speed", [(1, at(0))]))
    response = await post_temporal(client, history("speed", [(2, at(1))]))
    assert response.status_code == 204
    assert await values(client, "speed") == [[1, at(0)], [2, at(1)]]
    assert (await retrieve(client, SENSOR))["speed"] == prop(2, observedAt=at(1))
    # An older instance goes into the history but leaves the newer current value.
    await post_temporal(client, history("speed", [(0, at(0, 30))]))
    assert (await retrieve(client, SENSOR))["speed"] == prop(2, observedAt=at(1))


async def test_instance_with_the_same_observed_at_replaces_the_stored_one(
    client: httpx.AsyncClient,
) -> None:
    await post_temporal(client, history("speed", [(1, at(0)), (2, at(1))]))
    await post_temporal(client, history("speed", [(20, at(1))]))
    assert await values(client, "speed") == [[1, at(0)], [20, at(1)]]


async def test_append_attrs_adds_instances_of_new_and_existing_attributes(
    client: httpx.AsyncClient,
) -> None:
    await post_temporal(client, history("speed", [(1, at(1))]))
    body = {"speed": [prop(0, observedAt=at(0))], "heading": [prop(90, observedAt=at(0))]}
    response = await client.post(f"{TEMPORAL}/{SENSOR}/attrs", json=body)
    assert response.status_code == 204
    assert await values(client, "speed") == [[0, at(0)], [1, at(1)]]
    assert await values(client, "heading") == [[90, at(0)]]
    response = await client.post(
        f"{TEMPORAL}/urn:ngsi-ld:Sensor:nope/attrs", json={"speed": [prop(1, observedAt=at(0))]}
    )
    assert_problem(response, 404, "ResourceNotFound")
    assert (await client.get(f"{API}/entities/urn:ngsi-ld:Sensor:nope")).status_code == 404


async def test_delete_temporal_entity_removes_history_and_current_entity(
    client: httpx.AsyncClient,
) -> None:
    await post_temporal(client, history("speed", [(1, at(0))]))
    assert (await client.delete(f"{TEMPORAL}/{SENSOR}")).status_code == 204
    assert_problem(await client.get(f"{TEMPORAL}/{SENSOR}"), 404, "ResourceNotFound")
    assert_problem(await client.get(f"{API}/entities/{SENSOR}"), 404, "ResourceNotFound")
    assert_problem(await client.delete(f"{TEMPORAL}/{SENSOR}"), 404, "ResourceNotFound")


def _two_series() -> dict[str, Any]:
    return {
        "id": SENSOR,
        "type": "Sensor",
        "speed": [
            prop(1, observedAt=at(0)),
            prop(2, observedAt=at(1)),
            prop(10, observedAt=at(0), datasetId=GPS),
        ],
        "heading": [prop(90, observedAt=at(0))],
    }


@pytest.mark.parametrize(
    ("params", "left"),
    [
        ({}, [{"type": "Property", "datasetId": GPS, "values": [[10, at(0)]]}]),
        ({"datasetId": GPS}, [{"type": "Property", "values": [[1, at(0)], [2, at(1)]]}]),
        ({"deleteAll": "true"}, []),
    ],
    ids=["default-dataset", "one-dataset", "delete-all"],
)
async def test_delete_attribute_removes_the_series_asked_for(
    client: httpx.AsyncClient, params: dict[str, str], left: list[dict[str, Any]]
) -> None:
    await post_temporal(client, _two_series())
    response = await client.delete(f"{TEMPORAL}/{SENSOR}/attrs/speed", params=params)
    assert response.status_code == 204
    body = await temporal(client, options="temporalValues")
    speed = body.get("speed", [])
    assert (speed if isinstance(speed, list) else [speed]) == left
    assert body["heading"] == {"type": "Property", "values": [[90, at(0)]]}


@pytest.mark.parametrize(
    ("path", "params"),
    [
        (f"{SENSOR}/attrs/nope", {}),
        (f"{SENSOR}/attrs/speed", {"datasetId": "urn:ngsi-ld:Dataset:nope"}),
        ("urn:ngsi-ld:Sensor:nope/attrs/speed", {}),
    ],
    ids=["attribute", "dataset", "entity"],
)
async def test_delete_attribute_that_does_not_exist_is_not_found(
    client: httpx.AsyncClient, path: str, params: dict[str, str]
) -> None:
    await post_temporal(client, _two_series())
    before = await temporal(client)
    assert_problem(
        await client.delete(f"{TEMPORAL}/{path}", params=params), 404, "ResourceNotFound"
    )
    assert await temporal(client) == before


async def test_modify_instance_changes_it_in_place(client: httpx.AsyncClient) -> None:
    await post_temporal(client, history("speed", [(1, at(0)), (2, at(1))]))
    first, second = (await temporal(client, options="sysAttrs"))["speed"]
    response = await client.patch(
        f"{TEMPORAL}/{SENSOR}/attrs/speed/{first['instanceId']}",
        json={"speed": {"type": "Property", "value": 100}},
    )
    assert response.status_code == 204
    after = (await temporal(client, options="sysAttrs"))["speed"]
    assert [i["instanceId"] for i in after] == [first["instanceId"], second["instanceId"]]
    assert after[0]["value"] == 100 and after[0]["observedAt"] == at(0)
    assert after[0]["modifiedAt"] > first["modifiedAt"]
    assert after[0]["createdAt"] == first["createdAt"]
    assert after[1] == second


async def test_delete_instance_removes_only_that_instance(client: httpx.AsyncClient) -> None:
    await post_temporal(client, history("speed", [(1, at(0)), (2, at(1)), (3, at(2))]))
    middle = (await temporal(client))["speed"][1]["instanceId"]
    assert (await client.delete(f"{TEMPORAL}/{SENSOR}/attrs/speed/{middle}")).status_code == 204
    assert await values(client, "speed") == [[1, at(0)], [3, at(2)]]
    response = await client.delete(f"{TEMPORAL}/{SENSOR}/attrs/speed/{middle}")
    assert_problem(response, 404, "ResourceNotFound")


@pytest.mark.parametrize("method", ["PATCH", "DELETE"])
@pytest.mark.parametrize(
    "target",
    [
        "urn:ngsi-ld:Sensor:nope/attrs/speed/{i}",
        SENSOR + "/attrs/nope/{i}",
        SENSOR + "/attrs/speed/urn:ngsi-ld:attribute-instance:999999",
        SENSOR + "/attrs/heading/{i}",
    ],
    ids=["entity", "attribute", "instance", "instance-of-another-attribute"],
)
async def test_instance_operations_on_what_does_not_exist_are_not_found(
    client: httpx.AsyncClient, method: str, target: str
) -> None:
    body = history("speed", [(1, at(0))]) | {"heading": [prop(90, observedAt=at(0))]}
    await post_temporal(client, body)
    instance = (await temporal(client))["speed"][0]["instanceId"]
    before = await temporal(client)
    response = await client.request(
        method,
        f"{TEMPORAL}/{target.format(i=instance)}",
        json={"type": "Property", "value": 0} if method == "PATCH" else None,
    )
    assert_problem(response, 404, "ResourceNotFound")
    assert await temporal(client) == before


@pytest.mark.parametrize(
    "body",
    [
        history("speed", [(1, "yesterday")]),
        history("speed", [(1, at(0))], entity_id="not a uri"),
        {"id": SENSOR, "type": "Sensor", "speed": [prop(1, observedAt=at(0)), rel("bad uri")]},
    ],
    ids=["bad-observed-at", "bad-id", "one-bad-instance"],
)
async def test_rejected_temporal_post_leaves_history_unchanged(
    client: httpx.AsyncClient, body: dict[str, Any]
) -> None:
    await post_temporal(client, history("speed", [(1, at(0))]))
    before = await temporal(client, options="sysAttrs")
    response = await client.post(TEMPORAL, json=body)
    assert_problem(response, 400, "BadRequestData")
    assert await temporal(client, options="sysAttrs") == before


# -- retrieve: windows and selections ---------------------------------------------------------

HOURS = [0, 1, 2, 3, 4, 5]


@pytest.mark.parametrize(
    ("params", "keep"),
    [
        ({"timerel": "before", "timeAt": at(2)}, lambda h: h < 2),
        ({"timerel": "after", "timeAt": at(2)}, lambda h: h >= 2),
        ({"timerel": "between", "timeAt": at(1), "endTimeAt": at(4)}, lambda h: 1 <= h < 4),
        ({"timerel": "after", "timeAt": "2026-01-01T11:00:00+09:00"}, lambda h: h >= 2),
        ({"timerel": "before", "timeAt": at(0)}, lambda h: False),
        ({"timerel": "after", "timeAt": at(23)}, lambda h: False),
        ({}, lambda h: True),
    ],
    ids=["before", "after", "between", "after-with-offset", "before-all", "after-all", "none"],
)
async def test_timerel_windows_on_observed_at(
    client: httpx.AsyncClient, params: dict[str, str], keep: Any
) -> None:
    await post_temporal(client, history("speed", [(h, at(h)) for h in HOURS]))
    body = await temporal(client, options="temporalValues", **params)
    expected = [[h, at(h)] for h in HOURS if keep(h)]
    assert body.get("speed", {"values": []})["values"] == expected


async def test_timeproperty_created_at_and_modified_at(client: httpx.AsyncClient) -> None:
    for hour in (0, 1, 2):
        await post_temporal(client, history("speed", [(hour, at(hour))]))
    instances = (await temporal(client, options="sysAttrs"))["speed"]
    second = instances[1]
    after_second = await temporal(
        client, timeproperty="createdAt", timerel="after", timeAt=second["createdAt"]
    )
    assert [i["value"] for i in after_second["speed"]] == [1, 2]
    response = await client.patch(
        f"{TEMPORAL}/{SENSOR}/attrs/speed/{instances[0]['instanceId']}",
        json={"type": "Property", "value": 10},
    )
    assert response.status_code == 204
    modified = (await temporal(client, options="sysAttrs"))["speed"][0]["modifiedAt"]
    changed = await temporal(client, timeproperty="modifiedAt", timerel="after", timeAt=modified)
    assert [i["value"] for i in changed["speed"]] == [10]
    # temporalValues pair each value with the time property asked for.
    pairs = await values(client, "speed", timeproperty="createdAt")
    assert [p[1] for p in pairs] == [i["createdAt"] for i in instances]


@pytest.mark.parametrize(
    ("params", "expected_hours"),
    [
        ({"lastN": "2"}, [4, 5]),
        ({"lastN": "100"}, HOURS),
        ({"lastN": "2", "timerel": "before", "timeAt": at(3)}, [1, 2]),
        ({"lastN": "1", "timerel": "between", "timeAt": at(1), "endTimeAt": at(3)}, [2]),
    ],
    ids=["newest", "more-than-there-are", "before", "between"],
)
async def test_last_n_gives_the_newest_instances_oldest_first(
    client: httpx.AsyncClient, params: dict[str, str], expected_hours: list[int]
) -> None:
    await post_temporal(client, history("speed", [(h, at(h)) for h in HOURS]))
    assert await values(client, "speed", **params) == [[h, at(h)] for h in expected_hours]


async def test_attrs_selects_attributes(client: httpx.AsyncClient) -> None:
    body = _two_series() | {"name": [prop("a", observedAt=at(0))]}
    await post_temporal(client, body)
    got = await temporal(client, attrs="heading,name")
    assert set(got) == {"id", "type", "heading", "name"}
    assert_problem(
        await client.get(f"{TEMPORAL}/{SENSOR}", params={"attrs": "nope"}), 404, "ResourceNotFound"
    )
    # Attributes that exist but have nothing in the window: 200 without them.
    empty = await temporal(client, attrs="heading", timerel="after", timeAt=at(20))
    assert empty == {"id": SENSOR, "type": "Sensor"}


@pytest.mark.parametrize(
    ("dataset", "expected"),
    [
        (GPS, {"type": "Property", "datasetId": GPS, "values": [[10, at(0)]]}),
        ("@none", {"type": "Property", "values": [[1, at(0)], [2, at(1)]]}),
        (
            f"@none,{GPS}",
            [
                {"type": "Property", "values": [[1, at(0)], [2, at(1)]]},
                {"type": "Property", "datasetId": GPS, "values": [[10, at(0)]]},
            ],
        ),
    ],
    ids=["dataset", "default", "both"],
)
async def test_dataset_id_selects_series(
    client: httpx.AsyncClient, dataset: str, expected: Any
) -> None:
    await post_temporal(client, _two_series())
    body = await temporal(client, options="temporalValues", datasetId=dataset, attrs="speed")
    assert body["speed"] == expected


async def test_normalized_instances_of_two_datasets_are_in_time_order(
    client: httpx.AsyncClient,
) -> None:
    await post_temporal(client, _two_series())
    speed = (await temporal(client))["speed"]
    assert [(i["value"], i.get("datasetId")) for i in speed] == [(1, None), (10, GPS), (2, None)]


async def test_temporal_values_use_the_member_of_each_attribute_type(
    client: httpx.AsyncClient,
) -> None:
    name = {"type": "LanguageProperty", "languageMap": {"en": "car", "ja": "車"}}
    body = {
        "id": SENSOR,
        "type": "Sensor",
        "owner": [rel("urn:ngsi-ld:Person:1", observedAt=at(0))],
        "location": [point(134.05, 34.34) | {"observedAt": at(0)}],
        "name": [name | {"observedAt": at(0)}],
    }
    await post_temporal(client, body)
    got = await temporal(client, options="temporalValues")
    assert got["owner"] == {"type": "Relationship", "objects": [["urn:ngsi-ld:Person:1", at(0)]]}
    assert got["location"] == {
        "type": "GeoProperty",
        "values": [[{"type": "Point", "coordinates": [134.05, 34.34]}, at(0)]],
    }
    assert got["name"] == {
        "type": "LanguageProperty",
        "languageMaps": [[{"languageMap": name["languageMap"]}, at(0)]],
    }


@pytest.mark.parametrize(
    ("params", "same_as"),
    [
        ({"format": "temporalValues"}, {"options": "temporalValues"}),
        ({"format": "simplified"}, {"options": "temporalValues"}),
        ({"format": "normalized"}, {}),
        ({"format": "temporalValues", "options": "sysAttrs"}, {"options": "temporalValues"}),
    ],
)
async def test_format_chooses_the_representation(
    client: httpx.AsyncClient, params: dict[str, str], same_as: dict[str, str]
) -> None:
    await post_temporal(client, _two_series())
    assert (await temporal(client, **params))["speed"] == (await temporal(client, **same_as))[
        "speed"
    ]


async def test_sys_attrs_adds_system_times_to_entity_and_instances(
    client: httpx.AsyncClient,
) -> None:
    await post_temporal(client, history("speed", [(1, at(0))]))
    plain = await temporal(client)
    full = await temporal(client, options="sysAttrs")
    assert "createdAt" not in plain and "createdAt" not in plain["speed"][0]
    assert full["createdAt"] <= full["modifiedAt"]
    instance = full["speed"][0]
    assert instance["createdAt"] == instance["modifiedAt"] == full["createdAt"]


@pytest.mark.parametrize(
    ("params", "keys"),
    [
        ({"pick": "id,speed"}, {"id", "speed"}),
        ({"pick": "type,heading"}, {"type", "heading"}),
        ({"omit": "speed"}, {"id", "type", "heading"}),
        ({"omit": "id,type,heading"}, {"speed"}),
    ],
)
async def test_pick_and_omit_project_the_temporal_entity(
    client: httpx.AsyncClient, params: dict[str, str], keys: set[str]
) -> None:
    await post_temporal(client, _two_series())
    body = await temporal(client, **params)
    assert set(body) == keys
    if "speed" in keys:
        assert body["speed"] == (await temporal(client))["speed"]


async def test_lang_turns_language_property_instances_into_properties(
    client: httpx.AsyncClient,
) -> None:
    name = {"type": "LanguageProperty", "languageMap": {"en": "car", "ja": "車"}}
    await post_temporal(
        client, {"id": SENSOR, "type": "Sensor", "name": [name | {"observedAt": at(0)}]}
    )
    instance = (await temporal(client, lang="ja"))["name"][0]
    assert {k: instance[k] for k in ("type", "value", "lang")} == {
        "type": "Property",
        "value": "車",
        "lang": "ja",
    }


async def test_tenants_keep_separate_histories(client: httpx.AsyncClient) -> None:
    city = {"NGSILD-Tenant": "takamatsu"}
    response = await post_temporal(client, history("speed", [(1, at(0))]), headers=city)
    assert response.headers["ngsild-tenant"] == "takamatsu"
    await post_temporal(client, history("speed", [(2, at(0))]))
    response = await client.get(
        f"{TEMPORAL}/{SENSOR}", params={"options": "temporalValues"}, headers=city
    )
    assert response.json()["speed"]["values"] == [[1, at(0)]]
    assert await values(client, "speed") == [[2, at(0)]]
    assert (await client.delete(f"{TEMPORAL}/{SENSOR}", headers=city)).status_code == 204
    assert await values(client, "speed") == [[2, at(0)]]
    found = await client.get(TEMPORAL, params={"type": "Sensor"}, headers=city)
    assert found.json() == []
    for path in (f"{TEMPORAL}/{SENSOR}", f"{TEMPORAL}?type=Sensor"):
        unknown = await client.get(path, headers={"NGSILD-Tenant": "nowhere"})
        assert_problem(unknown, 404, "NonexistentTenant")


# -- query: GET /temporal/entities and POST /temporal/entityOperations/query ----------------


def _room_or_car(n: int) -> dict[str, Any]:
    kind = "Room" if n % 2 else "Car"
    return {
        "id": f"urn:ngsi-ld:{kind}:{n}",
        "type": kind,
        "scope": "/kagawa/takamatsu" if n < 3 else "/tokyo",
        "temp": [prop(10 * n, observedAt=at(n)), prop(10 * n + 1, observedAt=at(n, day=2))],
        "location": [point(134.0 + n / 100, 34.0) | {"observedAt": at(n)}],
    }


@pytest.fixture
async def fleet(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    bodies = [_room_or_car(n) for n in (1, 2, 3, 4)]
    for body in bodies:
        await post_temporal(client, body)
    return bodies


async def _query_ids(client: httpx.AsyncClient, **params: str) -> list[str]:
    response = await client.get(TEMPORAL, params=params)
    assert response.status_code == 200, response.text
    return [e["id"] for e in response.json()]


ROOM1, CAR2, ROOM3, CAR4 = (
    f"urn:ngsi-ld:{k}:{n}" for k, n in [("Room", 1), ("Car", 2), ("Room", 3), ("Car", 4)]
)


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"type": "Room"}, [ROOM1, ROOM3]),
        ({"type": "Room,Car"}, [ROOM1, CAR2, ROOM3, CAR4]),
        ({"type": "Room,Car", "id": f"{ROOM1},{CAR4}"}, [ROOM1, CAR4]),
        ({"type": "Room,Car", "idPattern": ".*:[12]$"}, [ROOM1, CAR2]),
        ({"q": "temp>25"}, [ROOM3, CAR4]),
        ({"type": "Room,Car", "scopeQ": "/kagawa/#"}, [ROOM1, CAR2]),
        (
            {
                "georel": "near;maxDistance==2000",
                "geometry": "Point",
                "coordinates": "[134.0,34.0]",
            },
            [ROOM1, CAR2],
        ),
        ({"local": "true"}, [ROOM1, CAR2, ROOM3, CAR4]),
        ({"attrs": "temp", "timerel": "after", "timeAt": at(3, day=2)}, [ROOM3, CAR4]),
        ({"type": "Room,Car", "timerel": "before", "timeAt": at(3)}, [ROOM1, CAR2]),
        ({"type": "Room,Car", "orderBy": "temp;desc"}, [CAR4, ROOM3, CAR2, ROOM1]),
    ],
    ids=[
        "type",
        "types",
        "id",
        "idPattern",
        "q",
        "scopeQ",
        "geoQ",
        "local",
        "attrs-window",
        "window",
        "orderBy",
    ],
)
async def test_query_selects_temporal_entities(
    client: httpx.AsyncClient,
    fleet: list[dict[str, Any]],
    params: dict[str, str],
    expected: list[str],
) -> None:
    assert await _query_ids(client, **params) == expected


async def test_query_returns_each_entity_with_its_window(
    client: httpx.AsyncClient, fleet: list[dict[str, Any]]
) -> None:
    response = await client.get(
        TEMPORAL,
        params={
            "type": "Car",
            "attrs": "temp",
            "options": "temporalValues",
            "timerel": "after",
            "timeAt": at(0, day=2),
        },
    )
    assert response.json() == [
        {
            "id": b["id"],
            "type": "Car",
            "scope": b["scope"],
            "temp": {
                "type": "Property",
                "values": [[b["temp"][1]["value"], b["temp"][1]["observedAt"]]],
            },
        }
        for b in fleet
        if b["type"] == "Car"
    ]


async def test_query_pages_with_limit_offset_and_count(
    client: httpx.AsyncClient, fleet: list[dict[str, Any]]
) -> None:
    response = await client.get(
        TEMPORAL, params={"type": "Room,Car", "limit": "2", "offset": "1", "count": "true"}
    )
    assert [e["id"] for e in response.json()] == [CAR2, ROOM3]
    assert response.headers["ngsild-results-count"] == str(len(fleet))


async def test_post_query_with_temporal_q(
    client: httpx.AsyncClient, fleet: list[dict[str, Any]]
) -> None:
    body = {
        "type": "Query",
        "entities": [{"type": "Room"}],
        "attrs": ["temp"],
        "temporalQ": {"timerel": "between", "timeAt": at(0), "endTimeAt": at(2, day=2)},
    }
    response = await client.post(TEMPORAL_QUERY, json=body, params={"options": "temporalValues"})
    assert response.status_code == 200, response.text
    assert {e["id"]: e["temp"]["values"] for e in response.json()} == {
        ROOM1: [[10, at(1)], [11, at(1, day=2)]],
        ROOM3: [[30, at(3)]],
    }


async def test_post_query_entity_selectors_are_alternatives(
    client: httpx.AsyncClient, fleet: list[dict[str, Any]]
) -> None:
    # Clause 5.2.33: each EntitySelector selects on its own; the result is their union.
    body = {"type": "Query", "entities": [{"id": ROOM1, "type": "Room"}, {"type": "Car"}]}
    response = await client.post(TEMPORAL_QUERY, json=body)
    assert response.status_code == 200, response.text
    assert sorted(e["id"] for e in response.json()) == sorted([ROOM1, CAR2, CAR4])


# -- instance pagination (clause 6.3.10) ----------------------------------------------------

PAGE = 5


@pytest.fixture
async def paged(tmp_path: Path) -> Any:
    settings = Settings(data_dir=tmp_path, durable=False, temporal_max_instances=PAGE)
    async with client_for(settings) as client:
        yield client


def _range(response: httpx.Response) -> tuple[str, str, str]:
    unit, _, rest = response.headers["content-range"].partition(" ")
    assert unit == "date-time"
    span, _, size = rest.rpartition("/")
    return span[:20], span[21:], size


async def test_more_instances_than_the_limit_give_206_and_a_content_range(
    paged: httpx.AsyncClient,
) -> None:
    speed = [(m, at(0, m)) for m in range(12)]
    await post_temporal(paged, history("speed", speed[:PAGE]))
    within = await paged.get(f"{TEMPORAL}/{SENSOR}")
    assert within.status_code == 200 and "content-range" not in within.headers
    body = history("speed", speed) | {
        "heading": [prop(m, observedAt=at(0, m)) for m in range(0, 12, 3)]
    }
    await post_temporal(paged, body)
    response = await paged.get(f"{TEMPORAL}/{SENSOR}", params={"options": "temporalValues"})
    assert response.status_code == 206
    first, last, size = _range(response)
    got = response.json()
    assert got["speed"]["values"] == [[v, t] for v, t in speed[:PAGE]]
    assert (first, last, size) == (speed[0][1], speed[PAGE - 1][1], "*")
    # Every attribute is cut at the same time.
    assert [p[1] for p in got["heading"]["values"]] == [
        at(0, m) for m in range(0, 12, 3) if at(0, m) <= last
    ]


async def test_last_n_beyond_the_limit_gives_the_newest_page_and_its_size(
    paged: httpx.AsyncClient,
) -> None:
    speed = [(m, at(0, m)) for m in range(12)]
    await post_temporal(paged, history("speed", speed))
    response = await paged.get(
        f"{TEMPORAL}/{SENSOR}", params={"options": "temporalValues", "lastN": "8"}
    )
    assert response.status_code == 206
    assert response.json()["speed"]["values"] == [[v, t] for v, t in speed[-PAGE:]]
    assert _range(response) == (speed[-1][1], speed[-PAGE][1], "8")


async def _follow_pages(client: httpx.AsyncClient) -> list[list[dict[str, Any]]]:
    """Pages of speed instances, each next request starting at the last Content-Range end."""
    pages: list[list[dict[str, Any]]] = []
    params: dict[str, str] = {}
    for _ in range(100):
        response = await client.get(f"{TEMPORAL}/{SENSOR}", params=params)
        pages.append(response.json().get("speed", []))
        if response.status_code == 200:
            return pages
        assert response.status_code == 206
        params = {"timerel": "after", "timeAt": _range(response)[1]}
    raise AssertionError("the pages never end")


async def test_following_content_range_collects_every_instance_exactly_once(
    paged: httpx.AsyncClient,
) -> None:
    speed = [(m, at(0, m)) for m in range(23)]
    await post_temporal(paged, history("speed", speed))
    pages = await _follow_pages(paged)
    assert len(pages) > 1
    collected: dict[str, Any] = {}
    for n, page in enumerate(pages):
        for instance in page:
            if instance["instanceId"] in collected:
                # after includes timeAt: only the instance at the previous page's end repeats.
                assert instance["observedAt"] == pages[n - 1][-1]["observedAt"]
            collected[instance["instanceId"]] = instance
    assert [(i["value"], i["observedAt"]) for i in collected.values()] == speed


async def test_instances_sharing_a_time_are_never_split_across_pages(
    paged: httpx.AsyncClient,
) -> None:
    await create(paged, entity(SENSOR, "Sensor", speed=prop(0, observedAt=at(0, 0))))
    minutes = [1, 2, 3, 4, 4, 5, 6]  # the 5th and 6th instances share 00:04
    for n, minute in enumerate(minutes, start=1):
        response = await paged.patch(
            f"{API}/entities/{SENSOR}/attrs", json={"speed": prop(n, observedAt=at(0, minute))}
        )
        assert response.status_code == 204
    pages = await _follow_pages(paged)
    assert [[i["value"] for i in page] for page in pages] == [[0, 1, 2, 3], [4, 5, 6, 7]]


async def test_query_pagination_cuts_every_entity_at_the_same_time(
    paged: httpx.AsyncClient,
) -> None:
    early = history("speed", [(m, at(0, m)) for m in range(8)], entity_id="urn:ngsi-ld:Sensor:a")
    late = history(
        "speed", [(m, at(0, m)) for m in range(3, 11, 2)], entity_id="urn:ngsi-ld:Sensor:b"
    )
    await post_temporal(paged, early)
    await post_temporal(paged, late)
    response = await paged.get(TEMPORAL, params={"type": "Sensor", "options": "temporalValues"})
    assert response.status_code == 206
    _, last, _ = _range(response)
    assert last == at(0, PAGE - 1)
    by_id = {e["id"]: e["speed"] for e in response.json()}
    assert by_id[early["id"]]["values"] == [[m, at(0, m)] for m in range(PAGE)]
    assert [p[1] for p in by_id[late["id"]]["values"]] == [at(0, 3)]


# -- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "problem"),
    [
        ({"timerel": "after"}, "BadRequestData"),
        ({"timeAt": at(0)}, "BadRequestData"),
        ({"timerel": "between", "timeAt": at(0)}, "BadRequestData"),
        ({"timerel": "between", "timeAt": at(2), "endTimeAt": at(1)}, "BadRequestData"),
        ({"timerel": "during", "timeAt": at(0)}, "BadRequestData"),
        ({"timerel": "after", "timeAt": "yesterday"}, "BadRequestData"),
        ({"timerel": "after", "timeAt": "2026-13-01T00:00:00Z"}, "BadRequestData"),
        ({"timeproperty": "updatedAt"}, "BadRequestData"),
        ({"lastN": "0"}, "BadRequestData"),
        ({"lastN": "many"}, "BadRequestData"),
        ({"options": "aggregatedValues"}, "BadRequestData"),
        ({"options": "aggregatedValues", "aggrMethods": "median"}, "BadRequestData"),
        ({"options": "bogus"}, "InvalidRequest"),
        ({"format": "bogus"}, "InvalidRequest"),
        ({"options": "temporalValues,aggregatedValues", "aggrMethods": "sum"}, "InvalidRequest"),
    ],
    ids=lambda v: "-".join(f"{k}={x}" for k, x in v.items()) if isinstance(v, dict) else v,
)
async def test_bad_query_parameters_are_rejected_and_change_nothing(
    client: httpx.AsyncClient, params: dict[str, str], problem: str
) -> None:
    await post_temporal(client, history("speed", [(1, at(0))]))
    before = await temporal(client, options="sysAttrs")
    assert_problem(await client.get(f"{TEMPORAL}/{SENSOR}", params=params), 400, problem)
    assert_problem(await client.get(TEMPORAL, params={"type": "Sensor", **params}), 400, problem)
    assert await temporal(client, options="sysAttrs") == before


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", f"{TEMPORAL}/not-a-uri", None),
        ("DELETE", f"{TEMPORAL}/not-a-uri", None),
        ("DELETE", f"{TEMPORAL}/not-a-uri/attrs/speed", None),
        ("GET", TEMPORAL, None),
        ("POST", TEMPORAL_QUERY, {"type": "NotAQuery", "entities": [{"type": "Sensor"}]}),
        ("POST", TEMPORAL_QUERY, {"type": "Query"}),
        (
            "POST",
            TEMPORAL_QUERY,
            {
                "type": "Query",
                "entities": [{"type": "Sensor"}],
                "temporalQ": {"timerel": "between", "timeAt": at(0)},
            },
        ),
        (
            "POST",
            TEMPORAL_QUERY,
            {"type": "Query", "entities": [{"type": "Sensor"}], "temporalQ": "after"},
        ),
    ],
    ids=[
        "get-invalid-id",
        "delete-invalid-id",
        "delete-attribute-of-invalid-id",
        "query-without-filter",
        "post-query-not-a-query",
        "post-query-without-filter",
        "post-query-between-without-end",
        "post-query-temporalQ-not-object",
    ],
)
async def test_malformed_requests_are_bad_request_data(
    client: httpx.AsyncClient, method: str, path: str, body: Any
) -> None:
    await post_temporal(client, history("speed", [(1, at(0))]))
    before = await temporal(client, options="sysAttrs")
    assert_problem(await client.request(method, path, json=body), 400, "BadRequestData")
    assert await temporal(client, options="sysAttrs") == before
