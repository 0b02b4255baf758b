"""Federation between cities (issue #8): three real ``cityos serve`` processes on loopback,
each with its own data directory, registering one another as context sources.

The prefecture (``pref``) registers the river gauges of two towns (``east``, ``west``) and
answers queries over all three in place; an exclusive registration forwards writes of a
sluice gate's ``gateOpen`` to the town that operates it; three instances registered in a
ring detect the loop; a source that is down or hangs is reported, not waited for. The
outside world (a source that checks credentials, one that never answers) is played by
real local servers.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from servers import API, Server, free_port, start_server

RIVER = "WaterObserved"
GATE = "urn:ngsi-ld:SluiceGate:east-01"


def _gauge(town: str, n: int, level: float) -> dict[str, Any]:
    return {
        "id": f"urn:ngsi-ld:{RIVER}:{town}-{n:02}",
        "type": RIVER,
        "waterLevel": {"type": "Property", "value": level, "unitCode": "MTR"},
        "town": {"type": "Property", "value": town},
    }


def _register(
    at: Server, source: Server | str, at_tenant: str = "", **members: Any
) -> dict[str, Any]:
    endpoint = source if isinstance(source, str) else source.url
    body: dict[str, Any] = {
        "type": "ContextSourceRegistration",
        "information": [{"entities": [{"type": RIVER}]}],
        "endpoint": endpoint,
        **members,
    }
    headers = {"NGSILD-Tenant": at_tenant} if at_tenant else {}
    response = httpx.post(f"{at.url}{API}/csourceRegistrations", json=body, headers=headers)
    assert response.status_code == 201, response.text
    body["id"] = response.headers["location"].rsplit("/", 1)[-1]
    return body


def _create(at: Server, entity: dict[str, Any], tenant: str = "") -> None:
    headers = {"NGSILD-Tenant": tenant} if tenant else {}
    response = httpx.post(f"{at.url}{API}/entities", json=entity, headers=headers)
    assert response.status_code == 201, response.text


@pytest.fixture(scope="module")
def cities(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Server]]:
    root = tmp_path_factory.mktemp("cities")
    running: dict[str, Server] = {}
    try:
        for name in ("pref", "east", "west"):
            env = {"CITYOS_FEDERATION_ALIAS": f"cityos-{name}"}
            running[name] = start_server(root / name, env)
        pref, east, west = running["pref"], running["east"], running["west"]
        _create(pref, _gauge("pref", 1, 1.2))
        for n, level in enumerate((2.5, 3.9), start=1):
            _create(east, _gauge("east", n, level))
        _create(west, _gauge("west", 1, 0.8))
        _register(pref, east)
        _register(pref, west)
        yield running
    finally:
        for server in running.values():
            server.stop()


def _ids(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return sorted(e["id"] for e in response.json())


def test_a_query_spans_the_three_towns(cities: dict[str, Server]) -> None:
    response = httpx.get(
        f"{cities['pref'].url}{API}/entities", params={"type": RIVER, "count": "true"}
    )
    assert _ids(response) == [
        f"urn:ngsi-ld:{RIVER}:east-01",
        f"urn:ngsi-ld:{RIVER}:east-02",
        f"urn:ngsi-ld:{RIVER}:pref-01",
        f"urn:ngsi-ld:{RIVER}:west-01",
    ]
    assert response.headers["NGSILD-Results-Count"] == "4"
    assert "NGSILD-Warning" not in response.headers


def test_the_sources_filter_and_the_merged_page_is_rendered_once(
    cities: dict[str, Server],
) -> None:
    params = {"type": RIVER, "q": "waterLevel>1", "options": "keyValues", "attrs": "waterLevel"}
    response = httpx.get(f"{cities['pref'].url}{API}/entities", params=params)
    assert response.status_code == 200
    assert sorted((e["id"][-7:], e["waterLevel"]) for e in response.json()) == [
        ("east-01", 2.5),
        ("east-02", 3.9),
        ("pref-01", 1.2),
    ]


def test_paging_runs_over_the_merged_answer(cities: dict[str, Server]) -> None:
    url = f"{cities['pref'].url}{API}/entities"
    pages = [
        _ids(httpx.get(url, params={"type": RIVER, "limit": "2", "offset": str(offset)}))
        for offset in (0, 2)
    ]
    everything = _ids(httpx.get(url, params={"type": RIVER}))
    assert sorted(pages[0] + pages[1]) == everything
    assert not set(pages[0]) & set(pages[1])


def test_a_retrieval_reaches_the_town_that_holds_the_entity(cities: dict[str, Server]) -> None:
    entity_id = f"urn:ngsi-ld:{RIVER}:west-01"
    response = httpx.get(f"{cities['pref'].url}{API}/entities/{entity_id}")
    assert response.status_code == 200, response.text
    assert response.json()["waterLevel"]["value"] == 0.8
    local = httpx.get(f"{cities['pref'].url}{API}/entities/{entity_id}", params={"local": "true"})
    assert local.status_code == 404


def test_local_true_keeps_a_query_at_home(cities: dict[str, Server]) -> None:
    response = httpx.get(
        f"{cities['pref'].url}{API}/entities", params={"type": RIVER, "local": "true"}
    )
    assert _ids(response) == [f"urn:ngsi-ld:{RIVER}:pref-01"]


def test_the_registration_counts_the_calls_it_carried(cities: dict[str, Server]) -> None:
    pref = cities["pref"]
    httpx.get(f"{pref.url}{API}/entities", params={"type": RIVER})
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        regs = httpx.get(f"{pref.url}{API}/csourceRegistrations", params={"type": RIVER}).json()
        if all(r.get("timesSent", 0) > 0 for r in regs):
            break
        time.sleep(0.2)
    assert {r["status"] for r in regs} == {"ok"}
    assert all(r["timesSent"] >= 1 and "lastSuccess" in r for r in regs)


def test_an_exclusive_registration_forwards_the_writes(cities: dict[str, Server]) -> None:
    pref, east = cities["pref"], cities["east"]
    gate = {"id": GATE, "type": "SluiceGate", "name": {"type": "Property", "value": "East gate"}}
    _create(pref, gate)
    _create(
        east, {"id": GATE, "type": "SluiceGate", "gateOpen": {"type": "Property", "value": False}}
    )
    _register(
        pref,
        east,
        information=[
            {"entities": [{"id": GATE, "type": "SluiceGate"}], "propertyNames": ["gateOpen"]}
        ],
        mode="exclusive",
        operations=["updateOps", "retrieveOps"],
    )
    update = {
        "gateOpen": {"type": "Property", "value": True},
        "name": {"type": "Property", "value": "East sluice"},
    }
    response = httpx.patch(f"{pref.url}{API}/entities/{GATE}/attrs", json=update)
    assert response.status_code == 204, response.text

    at_east = httpx.get(f"{east.url}{API}/entities/{GATE}").json()
    assert at_east["gateOpen"]["value"] is True
    assert "name" not in at_east  # the town took only what it registered
    local = httpx.get(f"{pref.url}{API}/entities/{GATE}", params={"local": "true"}).json()
    assert local["name"]["value"] == "East sluice"
    assert "gateOpen" not in local
    merged = httpx.get(f"{pref.url}{API}/entities/{GATE}").json()
    assert merged["gateOpen"]["value"] is True
    assert merged["name"]["value"] == "East sluice"


def test_a_ring_of_three_cities_is_detected_and_stopped(cities: dict[str, Server]) -> None:
    pref, east, west = cities["pref"], cities["east"], cities["west"]
    ring = "ring"
    for n, server in enumerate((pref, east, west), start=1):
        _create(server, _gauge(f"ring{n}", 1, float(n)), tenant=ring)
    for here, there in ((pref, east), (east, west), (west, pref)):
        _register(here, there, at_tenant=ring, tenant=ring)
    started = time.monotonic()
    response = httpx.get(
        f"{pref.url}{API}/entities", params={"type": RIVER}, headers={"NGSILD-Tenant": ring}
    )
    assert time.monotonic() - started < 10  # no request went round forever
    assert _ids(response) == [f"urn:ngsi-ld:{RIVER}:ring{n}-01" for n in (1, 2, 3)]
    looped = httpx.get(
        f"{pref.url}{API}/entities",
        params={"type": RIVER},
        headers={"NGSILD-Tenant": ring, "Via": "1.1 cityos-west, 1.1 cityos-pref"},
    )
    assert looped.status_code == 508
    assert looped.json()["type"] == "https://uri.etsi.org/ngsi-ld/errors/LoopDetected"


class _Silent:
    """A TCP server that accepts connections and never answers: a hanging source."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def close(self) -> None:
        self.sock.close()


def test_a_source_down_or_hanging_is_reported_not_waited_for(tmp_path: Path) -> None:
    home = start_server(tmp_path / "home")
    silent = _Silent()
    try:
        _create(home, _gauge("home", 1, 1.0))
        dead = f"http://127.0.0.1:{free_port()}"
        down = _register(home, dead, management={"timeout": 300})
        hanging = _register(home, silent.url, management={"timeout": 300})
        started = time.monotonic()
        response = httpx.get(f"{home.url}{API}/entities", params={"type": RIVER}, timeout=30)
        elapsed = time.monotonic() - started
        assert _ids(response) == [f"urn:ngsi-ld:{RIVER}:home-01"]
        warning = response.headers["NGSILD-Warning"]
        assert down["id"] in warning and hanging["id"] in warning
        assert "did not answer in time" in warning
        assert elapsed < 3  # bounded by the 300 ms timeout, not the 5 s default
    finally:
        silent.close()
        home.stop()


class _Recorder(BaseHTTPRequestHandler):
    seen: list[dict[str, str]] = []

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        _Recorder.seen.append({**dict(self.headers), "path": self.path})
        body = json.dumps([_gauge("guarded", 1, 4.2)]).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        return


def test_credentials_reach_the_source_and_are_never_shown(tmp_path: Path) -> None:
    home = start_server(tmp_path / "home")
    guarded = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=guarded.serve_forever, daemon=True).start()
    try:
        reg = _register(
            home,
            f"http://127.0.0.1:{guarded.server_address[1]}",
            contextSourceInfo=[
                {"key": "Authorization", "value": "Bearer town-secret"},
                {"key": "X-Town", "value": "guarded"},
                {"key": "X-User", "value": "urn:ngsi-ld:request"},
                {"key": "NGSILD-Tenant", "value": "hacker"},
                {"key": "Via", "value": "1.1 evil"},
                {"key": "accept", "value": "application/ld+json"},
            ],
            tenant="guarded-town",
            management={"localOnly": True},
        )
        response = httpx.get(
            f"{home.url}{API}/entities", params={"type": RIVER}, headers={"X-User": "abcd"}
        )
        assert _ids(response) == [f"urn:ngsi-ld:{RIVER}:guarded-01"]
        sent = _Recorder.seen[-1]
        assert sent["Authorization"] == "Bearer town-secret"
        assert sent["X-Town"] == "guarded"
        assert sent["X-User"] == "abcd"  # copied from the triggering request (4.3.6.5)
        assert sent["NGSILD-Tenant"] == "guarded-town"  # never taken from contextSourceInfo
        assert sent["Via"] == "1.1 " + home.url.split("://")[1]
        assert "local=true" in sent["path"]  # localOnly: the source must not cascade
        assert sent["Accept"] == "application/ld+json"  # an instruction (4.3.6.6), no header
        httpx.get(f"{home.url}{API}/entities", params={"type": RIVER})
        assert "X-User" not in _Recorder.seen[-1]
        shown = httpx.get(f"{home.url}{API}/csourceRegistrations/{reg['id']}").json()
        assert shown["contextSourceInfo"] == [
            {"key": "Authorization", "value": "********"},
            {"key": "X-Town", "value": "guarded"},
            {"key": "X-User", "value": "urn:ngsi-ld:request"},
            {"key": "NGSILD-Tenant", "value": "hacker"},
            {"key": "Via", "value": "1.1 evil"},
            {"key": "accept", "value": "application/ld+json"},
        ]
        patched = httpx.patch(
            f"{home.url}{API}/csourceRegistrations/{reg['id']}",
            json={"contextSourceInfo": shown["contextSourceInfo"]},
        )
        assert patched.status_code == 204
        httpx.get(f"{home.url}{API}/entities", params={"type": RIVER})
        assert _Recorder.seen[-1]["Authorization"] == "Bearer town-secret"
    finally:
        guarded.shutdown()
        guarded.server_close()
        home.stop()


class _Source(BaseHTTPRequestHandler):
    """A context source that records each request and answers 201 to creates, 204 else."""

    requests: list[tuple[str, str, Any]] = []

    def _record(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        _Source.requests.append((self.command, self.path, body))
        status = 201 if self.command == "POST" and self.path.endswith("/entities") else 204
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_POST = do_PATCH = do_DELETE = _record  # noqa: N815 (http.server's naming)

    def log_message(self, *args: Any) -> None:
        return


@pytest.fixture
def source() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Source)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Source.requests = []
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_writes_go_to_inclusive_sources_and_partial_failures_are_207(
    tmp_path: Path, source: str
) -> None:
    home = start_server(tmp_path / "home")
    try:
        _register(home, source, operations=["redirectionOps", "createBatch", "deleteBatch"])
        gauge = _gauge("home", 1, 1.0)
        _create(home, gauge)  # stored here and copied to the source
        assert _Source.requests[-1] == ("POST", f"{API}/entities", gauge)
        again = httpx.post(f"{home.url}{API}/entities", json=gauge)
        assert again.status_code == 207  # the source took it, the local copy exists
        errors = again.json()["errors"]
        assert [e["error"]["status"] for e in errors] == [409]
        assert "registrationId" not in errors[0]

        batch = [_gauge("home", 2, 2.0), _gauge("home", 3, 3.0)]
        created = httpx.post(f"{home.url}{API}/entityOperations/create", json=batch)
        assert created.status_code == 201, created.text
        assert _Source.requests[-1] == ("POST", f"{API}/entityOperations/create", batch)
        ids = [g["id"] for g in batch]
        deleted = httpx.post(f"{home.url}{API}/entityOperations/delete", json=ids)
        assert deleted.status_code == 204
        assert _Source.requests[-1] == ("POST", f"{API}/entityOperations/delete", ids)
        local = httpx.get(f"{home.url}{API}/entities", params={"type": RIVER, "local": "true"})
        assert _ids(local) == [gauge["id"]]
    finally:
        home.stop()


def test_a_redirect_registration_keeps_nothing_locally(tmp_path: Path, source: str) -> None:
    home = start_server(tmp_path / "home")
    try:
        _register(home, source, mode="redirect", operations=["redirectionOps"])
        gauge = _gauge("away", 1, 1.0)
        _create(home, gauge)
        assert _Source.requests[-1] == ("POST", f"{API}/entities", gauge)
        response = httpx.patch(
            f"{home.url}{API}/entities/{gauge['id']}/attrs",
            json={"waterLevel": {"type": "Property", "value": 2.0}},
            params={"local": "false"},
        )
        assert response.status_code == 204
        assert _Source.requests[-1][:2] == ("PATCH", f"{API}/entities/{gauge['id']}/attrs")
        local = httpx.get(f"{home.url}{API}/entities/{gauge['id']}", params={"local": "true"})
        assert local.status_code == 404
        purge = httpx.delete(f"{home.url}{API}/entities", params={"type": RIVER})
        assert purge.status_code == 204
        assert _Source.requests[-1][:2] == ("DELETE", f"{API}/entities?type={RIVER}")
    finally:
        home.stop()


def test_a_redirect_source_that_cannot_take_a_write_is_a_conflict(
    tmp_path: Path, source: str
) -> None:
    home = start_server(tmp_path / "home")
    try:
        _register(home, source, mode="redirect", operations=["retrieveOps"])
        gauge = _gauge("away", 1, 1.0)
        response = httpx.post(f"{home.url}{API}/entities", json=gauge)
        assert response.status_code == 409, response.text
        assert response.json()["type"] == "https://uri.etsi.org/ngsi-ld/errors/Conflict"
        assert _Source.requests == []
        local = httpx.get(f"{home.url}{API}/entities/{gauge['id']}", params={"local": "true"})
        assert local.status_code == 404
    finally:
        home.stop()


def test_types_and_attributes_are_discovered_across_towns(tmp_path: Path) -> None:
    home, town = start_server(tmp_path / "home"), start_server(tmp_path / "town")
    try:
        _create(home, _gauge("home", 1, 1.0))
        _create(
            town,
            {"id": GATE, "type": "SluiceGate", "gateOpen": {"type": "Property", "value": False}},
        )
        _register(home, town, information=[{"entities": [{"type": "SluiceGate"}]}])
        types = httpx.get(f"{home.url}{API}/types").json()
        assert types["typeList"] == ["SluiceGate", RIVER]
        local = httpx.get(f"{home.url}{API}/types", params={"local": "true"}).json()
        assert local["typeList"] == [RIVER]
        details = httpx.get(f"{home.url}{API}/types", params={"details": "true"}).json()
        assert {d["typeName"]: d["attributeNames"] for d in details} == {
            "SluiceGate": ["gateOpen"],
            RIVER: ["town", "waterLevel"],
        }
        attrs = httpx.get(f"{home.url}{API}/attributes").json()
        assert attrs["attributeList"] == ["gateOpen", "town", "waterLevel"]
        town.stop()
        degraded = httpx.get(f"{home.url}{API}/types")
        assert degraded.json()["typeList"] == [RIVER]
        assert "NGSILD-Warning" in degraded.headers
    finally:
        home.stop()
        town.stop()


def _observe(at: Server, entity_id: str, level: float, when: str) -> None:
    update = {"waterLevel": {"type": "Property", "value": level, "observedAt": when}}
    response = httpx.patch(f"{at.url}{API}/entities/{entity_id}/attrs", json=update)
    assert response.status_code == 204, response.text


def test_the_history_of_a_towns_gauges_is_read_in_place(tmp_path: Path) -> None:
    home, town = start_server(tmp_path / "home"), start_server(tmp_path / "town")
    try:
        mine, theirs = _gauge("home", 1, 1.0), _gauge("town", 1, 2.0)
        _create(home, mine)
        _create(town, theirs)
        for hour, level in enumerate((2.1, 2.4, 2.9), start=1):
            _observe(town, theirs["id"], level, f"2026-11-01T0{hour}:00:00Z")
        _observe(home, mine["id"], 1.1, "2026-11-01T02:30:00Z")
        _register(home, town)
        url = f"{home.url}{API}/temporal/entities"
        window = {"timerel": "after", "timeAt": "2026-11-01T00:00:00Z", "attrs": "waterLevel"}
        one = httpx.get(f"{url}/{theirs['id']}", params=window)
        assert one.status_code == 200, one.text
        assert [i["value"] for i in one.json()["waterLevel"]] == [2.1, 2.4, 2.9]
        assert all("instanceId" in i for i in one.json()["waterLevel"])
        newest = httpx.get(f"{url}/{theirs['id']}", params={**window, "lastN": "2"}).json()
        assert [i["value"] for i in newest["waterLevel"]] == [2.4, 2.9]
        both = httpx.get(url, params={**window, "type": RIVER, "format": "temporalValues"})
        assert both.status_code == 200, both.text
        values = {e["id"]: e["waterLevel"]["values"] for e in both.json()}
        assert values == {
            mine["id"]: [[1.1, "2026-11-01T02:30:00Z"]],
            theirs["id"]: [
                [2.1, "2026-11-01T01:00:00Z"],
                [2.4, "2026-11-01T02:00:00Z"],
                [2.9, "2026-11-01T03:00:00Z"],
            ],
        }
        local = httpx.get(url, params={**window, "type": RIVER, "local": "true"}).json()
        assert [e["id"] for e in local] == [mine["id"]]
    finally:
        home.stop()
        town.stop()


def test_csf_chooses_which_sources_a_query_reaches(tmp_path: Path) -> None:
    home, town = start_server(tmp_path / "home"), start_server(tmp_path / "town")
    try:
        mine, theirs = _gauge("home", 1, 1.0), _gauge("town", 1, 2.0)
        _create(home, mine)
        _create(town, theirs)
        _register(home, town, sourceType="sensor")
        url = f"{home.url}{API}/entities"
        sensors = httpx.get(url, params={"type": RIVER, "csf": 'sourceType=="sensor"'})
        assert _ids(sensors) == sorted([mine["id"], theirs["id"]])
        archives = httpx.get(url, params={"type": RIVER, "csf": 'sourceType=="archive"'})
        assert _ids(archives) == [mine["id"]]
    finally:
        home.stop()
        town.stop()
