"""Every error path answers with the same ProblemDetails shape (RFC 9457, GS CIM 009 V1.8.1
clause 5.5.2) and leaves stored data as it was. One table, as datasette's
``tests/test_error_shape.py``; the 411 over a real socket is in ``tests/test_smoke_serve.py``
too."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from cityos.config import Settings

from .helpers import API, CORE_CONTEXT, ERRORS, create, entity, point, prop

MAX_BODY = 4096
MAX_LIMIT = 100
ID = "urn:ngsi-ld:Sensor:existing"
E = f"{API}/entities"
NEW = "urn:ngsi-ld:Sensor:new"
LINK_CORE = (
    f'<{CORE_CONTEXT}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'
)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path, durable=False, max_body_bytes=MAX_BODY, max_limit=MAX_LIMIT)


@dataclass(frozen=True)
class Case:
    id: str
    method: str
    path: str
    status: int
    problem: str
    json: Any = None
    content: bytes | None = None
    params: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    drop_content_length: bool = False
    chunked: bool = False


def _new(**attrs: Any) -> dict[str, Any]:
    return {"id": NEW, "type": "Sensor", **attrs}


def bad_entity(case_id: str, body: Any, problem: str = "BadRequestData") -> Case:
    """POST /entities with an Entity that must be refused."""
    return Case(case_id, "POST", E, 400, problem, json=body)


def bad_attr(case_id: str, name: str, attribute: Any) -> Case:
    return bad_entity(case_id, _new(**{name: attribute}))


def bad_query(
    case_id: str, status: int = 400, problem: str = "BadRequestData", **params: str
) -> Case:
    """GET /entities with query parameters that must be refused."""
    return Case(case_id, "GET", E, status, problem, params=params)


def bad_get(case_id: str, path: str, status: int, problem: str, **params: str) -> Case:
    return Case(case_id, "GET", API + path, status, problem, params=params)


def _geo(
    georel: str = "within",
    geometry: str = "Polygon",
    coordinates: str = "[[[0,0],[1,0],[1,1],[0,0]]]",
) -> dict[str, str]:
    return {"georel": georel, "geometry": geometry, "coordinates": coordinates}


NEW_BYTES = json.dumps(_new()).encode()
BIG = json.dumps(_new(blob=prop("x" * MAX_BODY))).encode()
LD = {"Content-Type": "application/ld+json"}
UNREACHABLE_LINK = {"Link": LINK_CORE.replace(CORE_CONTEXT, "http://127.0.0.1:9/ctx.jsonld")}
BATCH = f"{API}/entityOperations"
GEO = {"type": "GeoProperty"}

# fmt: off
CASES = [
    # -- the request itself ---------------------------------------------------------
    Case("invalid-json", "POST", E, 400, "InvalidRequest", content=b'{"id": "urn:a", "type": '),
    Case("invalid-json-patch", "PATCH", f"{E}/{ID}/attrs", 400, "InvalidRequest", content=b"{t: 1}"),
    Case("wrong-content-type", "POST", E, 415, "InvalidRequest", content=NEW_BYTES, headers={"Content-Type": "text/plain"}),
    Case("no-content-type", "POST", E, 415, "InvalidRequest", content=NEW_BYTES, headers={"Content-Type": ""}),
    Case("unacceptable-accept", "GET", f"{E}/{ID}", 406, "InvalidRequest", headers={"Accept": "text/html"}),
    Case("geojson-not-offered", "GET", f"{API}/types", 406, "InvalidRequest", headers={"Accept": "application/geo+json"}),
    Case("missing-content-length", "POST", E, 411, "InvalidRequest", content=NEW_BYTES, drop_content_length=True),
    Case("body-too-large", "POST", E, 413, "InvalidRequest", content=BIG),
    Case("chunked-body-too-large", "POST", E, 413, "InvalidRequest", content=BIG, chunked=True),
    Case("batch-body-too-large", "POST", f"{BATCH}/create", 413, "InvalidRequest", content=b"[" + BIG + b"]"),
    Case("method-not-allowed", "POST", f"{E}/{ID}", 405, "InvalidRequest", json=_new()),
    bad_get("unknown-path", "/nothing-here", 404, "ResourceNotFound"),
    bad_query("unknown-query-parameter", problem="InvalidRequest", type="Sensor", colour="red"),
    Case("link-with-ld-json", "POST", E, 400, "BadRequestData", json=_new(), headers={**LD, "Link": LINK_CORE}),
    bad_entity("context-in-plain-json", _new() | {"@context": {"a": "https://example.org/a"}}),
    Case("unreachable-context", "GET", E, 503, "LdContextNotAvailable", params={"type": "Sensor"}, headers=UNREACHABLE_LINK),
    # -- the data -------------------------------------------------------------------
    bad_entity("body-not-an-object", [_new()], "InvalidRequest"),
    bad_entity("no-id", {"type": "Sensor"}),
    bad_entity("no-type", {"id": NEW}),
    bad_entity("non-uri-id", _new(id="not a uri")),
    bad_get("non-uri-id-in-path", "/entities/not-a-uri", 400, "BadRequestData"),
    Case("non-uri-id-in-delete", "DELETE", f"{E}/not-a-uri", 400, "BadRequestData"),
    bad_attr("forbidden-char-lt", "temp<", prop(1)),
    bad_attr("forbidden-char-eq", "a=b", prop(1)),
    bad_attr("forbidden-char-paren", "f(x)", prop(1)),
    bad_attr("forbidden-char-quote", 'say"hi"', prop(1)),
    bad_attr("forbidden-char-space", "two words", prop(1)),
    Case("forbidden-char-in-append", "POST", f"{E}/{ID}/attrs", 400, "BadRequestData", json={"ok": prop(1), "a;b": prop(1)}),
    bad_entity("forbidden-char-in-type", _new(type="Sen;sor")),
    bad_attr("unknown-attribute-type", "temp", {"type": "Temperature", "value": 1}),
    bad_attr("null-value", "temp", {"type": "Property", "value": None}),
    bad_attr("property-without-value", "temp", {"type": "Property", "unitCode": "CEL"}),
    bad_attr("relationship-non-uri", "isIn", {"type": "Relationship", "object": "nope"}),
    bad_attr("geometry-invalid", "location", GEO | {"value": {"type": "Point", "coordinates": [200, 100]}}),
    bad_attr("geometry-unknown", "location", GEO | {"value": {"type": "Circle", "coordinates": [0, 0]}}),
    bad_attr("observed-at-not-datetime", "temp", prop(1, observedAt="yesterday")),
    bad_attr("language-map-not-strings", "name", {"type": "LanguageProperty", "languageMap": {"en": 3}}),
    bad_attr("dataset-id-not-uri", "temp", prop(1, datasetId="ds 1")),
    bad_attr("duplicate-dataset-id", "temp", [prop(1, datasetId="urn:a"), prop(2, datasetId="urn:a")]),
    bad_entity("scope-invalid", _new(scope="no-leading-slash")),
    Case("already-exists", "POST", E, 409, "AlreadyExists", json=entity(ID, "Sensor", temperature=prop(99))),
    Case("replace-id-mismatch", "PUT", f"{E}/{ID}", 400, "BadRequestData", json=entity(NEW, "Sensor")),
    Case("merge-id-mismatch", "PATCH", f"{E}/{ID}", 400, "BadRequestData", json={"id": NEW, "t": prop(1)}),
    Case("merge-invalid-attribute", "PATCH", f"{E}/{ID}", 400, "BadRequestData", json={"temperature": prop(1), "bad": {"type": "Relationship", "object": "x"}}),
    Case("delete-attr-dataset-not-uri", "DELETE", f"{E}/{ID}/attrs/temperature", 400, "BadRequestData", params={"datasetId": "not a uri"}),
    bad_get("unknown-options", f"/entities/{ID}", 400, "InvalidRequest", options="fancy"),
    bad_get("unknown-format", f"/entities/{ID}", 400, "InvalidRequest", format="fancy"),
    bad_get("pick-and-omit", f"/entities/{ID}", 400, "BadRequestData", pick="temperature", omit="location"),
    bad_get("empty-lang", f"/entities/{ID}", 400, "BadRequestData", lang=""),
    # -- not found ------------------------------------------------------------------
    bad_get("unknown-entity", "/entities/urn:ngsi-ld:Sensor:none", 404, "ResourceNotFound"),
    Case("delete-unknown-entity", "DELETE", f"{E}/urn:ngsi-ld:Sensor:none", 404, "ResourceNotFound"),
    Case("update-unknown-entity", "PATCH", f"{E}/urn:ngsi-ld:Sensor:none/attrs", 404, "ResourceNotFound", json={"t": prop(1)}),
    Case("partial-unknown-attribute", "PATCH", f"{E}/{ID}/attrs/humidity", 404, "ResourceNotFound", json={"value": 1}),
    Case("replace-unknown-attribute", "PUT", f"{E}/{ID}/attrs/humidity", 404, "ResourceNotFound", json=prop(1)),
    Case("delete-unknown-attribute", "DELETE", f"{E}/{ID}/attrs/humidity", 404, "ResourceNotFound"),
    bad_get("unknown-type", "/types/Nothing", 404, "ResourceNotFound"),
    bad_get("unknown-context", "/jsonldContexts/nothing", 404, "ResourceNotFound"),
    Case("unknown-tenant", "GET", f"{E}/{ID}", 404, "NonexistentTenant", headers={"NGSILD-Tenant": "fresh"}),
    Case("invalid-tenant-name", "GET", f"{E}/{ID}", 400, "BadRequestData", headers={"NGSILD-Tenant": "no spaces"}),
    Case("invalid-entity-in-new-tenant", "POST", E, 400, "BadRequestData", json=_new(id="bad id"), headers={"NGSILD-Tenant": "fresh"}),
    # -- queries --------------------------------------------------------------------
    bad_query("query-without-selector"),
    bad_query("bad-q-operator", q="temperature>>1"),
    bad_query("bad-q-parenthesis", q="(temperature>1"),
    bad_query("bad-q-value", q="temperature==@"),
    bad_query("bad-type-expression", type="(Sensor;"),
    bad_query("bad-scope-q", type="Sensor", scopeQ="Japan"),
    bad_query("bad-id-pattern", type="Sensor", idPattern="(["),
    bad_query("bad-georel", **_geo(georel="nearby")),
    bad_query("near-without-distance", **_geo(georel="near", geometry="Point", coordinates="[0,0]")),
    bad_query("geometry-missing", georel="within", coordinates="[0,0]"),
    bad_query("coordinates-not-json", **_geo(coordinates="[[0,0],")),
    bad_query("coordinates-not-fitting", **_geo(geometry="Point", coordinates="[[0,0],[1,1]]")),
    bad_query("limit-too-large", 403, "TooManyResults", type="Sensor", limit=str(MAX_LIMIT + 1)),
    bad_query("limit-negative", type="Sensor", limit="-1"),
    bad_query("limit-zero-without-count", type="Sensor", limit="0"),
    bad_query("count-not-boolean", type="Sensor", count="yes"),
    Case("post-query-not-a-query", "POST", f"{BATCH}/query", 400, "BadRequestData", json={"type": "Entity"}),
    # -- batch and registry ---------------------------------------------------------
    Case("batch-upsert-replace-and-update", "POST", f"{BATCH}/upsert", 400, "BadRequestData", json=[entity(ID, "Sensor")], params={"options": "replace,update"}),
    Case("context-without-context", "POST", f"{API}/jsonldContexts", 400, "InvalidRequest", json={"t": "https://example.org/t"}),
    bad_get("context-kind-unknown", "/jsonldContexts", 400, "BadRequestData", kind="Borrowed"),
]
# fmt: on


@pytest.fixture
async def existing(client: httpx.AsyncClient) -> dict[str, Any]:
    await create(
        client,
        entity(ID, "Sensor", temperature=prop(20, unitCode="CEL"), location=point(134.05, 34.34)),
    )
    return await _snapshot(client)


async def _snapshot(client: httpx.AsyncClient) -> dict[str, Any]:
    stored = await client.get(f"{E}/{ID}", params={"options": "sysAttrs"})
    everything = await client.get(
        E, params={"type": "Sensor", "count": "true", "options": "sysAttrs"}
    )
    return {
        "entity": stored.json(),
        "all": everything.json(),
        "count": everything.headers["ngsild-results-count"],
    }


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    for i in range(0, len(data), 1000):
        yield data[i : i + 1000]


def _request(client: httpx.AsyncClient, case: Case) -> httpx.Request:
    headers = dict(case.headers)
    if case.content is not None and "Content-Type" not in headers:
        headers["Content-Type"] = "application/json"
    content: Any = _chunks(case.content) if case.chunked and case.content else case.content
    request = client.build_request(
        case.method, case.path, json=case.json, content=content, params=case.params, headers=headers
    )
    if headers.get("Content-Type") == "":
        del request.headers["Content-Type"]
    if case.drop_content_length:
        del request.headers["Content-Length"]
    return request


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
async def test_error_shape(client: httpx.AsyncClient, existing: dict[str, Any], case: Case) -> None:
    response = await client.send(_request(client, case))
    assert response.status_code == case.status, response.text
    assert response.headers["content-type"] == "application/json"
    problem = response.json()
    assert problem["type"] == ERRORS + case.problem
    assert isinstance(problem["title"], str) and problem["title"]
    assert isinstance(problem["detail"], str) and problem["detail"].strip()
    assert problem.get("status", case.status) == case.status
    assert await _snapshot(client) == existing
    assert (await client.get(f"{E}/{NEW}")).status_code == 404
    fresh = await client.get(f"{API}/types", headers={"NGSILD-Tenant": "fresh"})
    assert fresh.status_code == 404, "a failed request must not create its tenant"


def test_cases_have_unique_ids() -> None:
    assert len({c.id for c in CASES}) == len(CASES)
