"""The requests of each workload, built ahead of time, and how each answer is checked.

Every factory is a small frozen dataclass, so ``--clients`` can ship it to a worker
process; ``build(client, clients)`` gives each client its own seeded request order.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from urllib.parse import quote, urlencode

import orjson
from yarl import URL

from bench.dataset import AREA_CENTER, AREA_HALF_SPAN, Dataset
from bench.engine import Request, Tally

__all__ = [
    "PAGE_LIMIT",
    "BatchSource",
    "CreateFactory",
    "GeoNearFactory",
    "QueryQFactory",
    "RetrieveFactory",
    "batch_requests",
    "count_url",
    "geo_near_url",
    "query_q_url",
    "random_point",
]

OK = frozenset({200})
CREATED = frozenset({201})
# GS CIM 009 clause 5.6.8: 201 when some Entities were created, 204 when all existed.
UPSERTED = frozenset({201, 204})
PAGE_LIMIT = 100
# Parsing a 100-Entity answer costs the driver ~300 us, counting bytes ~30 us: parse 1 in 16.
FULL_CHECK_EVERY = 16
_PREBUILT = 8192
_ID_PLACEHOLDER = b"@@ENTITY-ID@@"


class _Cycle:
    """Hands out prebuilt requests round-robin; subclasses say how to verify answers."""

    def __init__(self, requests: list[Request]) -> None:
        self._requests = requests
        self._next = 0

    def next_request(self) -> Request | None:
        request = self._requests[self._next]
        self._next = (self._next + 1) % len(self._requests)
        return request

    def verify(self, request: Request, body: bytes, tally: Tally) -> str | None:
        return None


class BatchSource:
    """Each request once, in order: the upsert batches that load the data set."""

    def __init__(self, requests: list[Request]) -> None:
        self._requests = iter(requests)

    def next_request(self) -> Request | None:
        return next(self._requests, None)

    def verify(self, request: Request, body: bytes, tally: Tally) -> str | None:
        return None


def batch_requests(api: str, dataset: Dataset, indexes: range, batch_size: int) -> list[Request]:
    """Serialized ``entityOperations/upsert`` bodies for Entities ``indexes``."""
    url = URL(f"{api}/entityOperations/upsert", encoded=True)
    requests = []
    for start in range(indexes.start, indexes.stop, batch_size):
        chunk = range(start, min(start + batch_size, indexes.stop))
        body = orjson.dumps([dataset.entity(index) for index in chunk])
        requests.append(Request("POST", url, UPSERTED, body, weight=len(chunk)))
    return requests


@dataclass(frozen=True)
class CreateFactory:
    """POST /entities with ids no other run or client uses (``series``)."""

    api: str
    dataset: Dataset
    series: str

    def build(self, client: int, clients: int) -> CreateSource:
        return CreateSource(self.api, self.dataset, f"{self.series}c{client}")


class CreateSource:
    """Bodies are templates with the id spliced in, so a request costs one bytes join."""

    def __init__(self, api: str, dataset: Dataset, series: str, templates: int = 512) -> None:
        self._url = URL(f"{api}/entities", encoded=True)
        self._series = series
        self._templates = [_template(dataset, index) for index in range(1, templates + 1)]
        self._count = 0

    def next_request(self) -> Request | None:
        self._count += 1
        prefix, suffix, entity_type = self._templates[self._count % len(self._templates)]
        entity_id = f"urn:ngsi-ld:{entity_type}:{self._series}-{self._count:07d}"
        return Request("POST", self._url, CREATED, prefix + entity_id.encode() + suffix)

    def verify(self, request: Request, body: bytes, tally: Tally) -> str | None:
        return None


def _template(dataset: Dataset, index: int) -> tuple[bytes, bytes, str]:
    entity = dataset.entity(index, series="create") | {"id": _ID_PLACEHOLDER.decode()}
    prefix, suffix = orjson.dumps(entity).split(_ID_PLACEHOLDER)
    return prefix, suffix, entity["type"]


@dataclass(frozen=True)
class RetrieveFactory:
    """GET /entities/{id} of random loaded Entities."""

    api: str
    dataset: Dataset

    def build(self, client: int, clients: int) -> RetrieveSource:
        rng = random.Random(self.dataset.seed + 101 * client)
        indexes = (rng.randint(1, self.dataset.size) for _ in range(_PREBUILT))
        return RetrieveSource([self._request(index) for index in indexes])

    def _request(self, index: int) -> Request:
        entity_id = self.dataset.entity_id(index)
        url = URL(f"{self.api}/entities/{entity_id}", encoded=True)
        return Request("GET", url, OK, tag=f'"{entity_id}"'.encode())


class RetrieveSource(_Cycle):
    def verify(self, request: Request, body: bytes, tally: Tally) -> str | None:
        return None if request.tag in body else "answer does not carry the requested id"


@dataclass(frozen=True)
class QueryQFactory:
    """``type`` + ``q=refDevice==<Device>``: each Device is shared by exactly 100 Entities,
    and consecutive requests ask for different Devices."""

    api: str
    dataset: Dataset
    entity_type: str = "WaterObserved"

    def build(self, client: int, clients: int) -> QueryQSource:
        devices = list(range(self.dataset.device_count(self.entity_type)))
        random.Random(self.dataset.seed + 211 * client).shuffle(devices)
        return QueryQSource([self._request(device) for device in devices])

    def _request(self, device: int) -> Request:
        device_id = self.dataset.device_id(self.entity_type, device)
        url = URL(query_q_url(self.api, self.entity_type, device_id), encoded=True)
        expected = frozenset(self.dataset.device_members(self.entity_type, device))
        needle = f'{device_id}"'.encode()
        return Request("GET", url, OK, tag=(needle, _id_prefix(self.entity_type), expected))


class QueryQSource(_Cycle):
    """Every answer must name the Device and the type exactly 100 times (cheap byte counts);
    every :data:`FULL_CHECK_EVERY`-th answer is parsed and its ids compared too."""

    def __init__(self, requests: list[Request]) -> None:
        super().__init__(requests)
        self._answers = 0

    def verify(self, request: Request, body: bytes, tally: Tally) -> str | None:
        needle, type_prefix, expected = request.tag
        found = body.count(needle)
        entities = body.count(type_prefix)
        if found != len(expected) or entities != len(expected):
            return f"{entities} Entities, {found} refer to the Device, expected {len(expected)}"
        self._answers += 1
        return None if self._answers % FULL_CHECK_EVERY else _compare_ids(body, expected)


def _compare_ids(body: bytes, expected: frozenset[str]) -> str | None:
    entities = orjson.loads(body)
    if not isinstance(entities, list):
        return f"answer is not a JSON array: {body[:200]!r}"
    ids = {entity.get("id") for entity in entities if isinstance(entity, dict)}
    if len(entities) == len(expected) and ids == expected:
        return None
    missing, extra = len(expected - ids), len(ids - expected)
    return f"{len(entities)} Entities, {missing} expected ones missing, {extra} unexpected"


@dataclass(frozen=True)
class GeoNearFactory:
    """``georel=near;maxDistance==radius_m`` around random points of the area."""

    api: str
    dataset: Dataset
    radius_m: int
    entity_type: str = "WaterObserved"

    def build(self, client: int, clients: int) -> GeoNearSource:
        rng = random.Random(self.dataset.seed + 307 * client)
        points = (random_point(rng) for _ in range(_PREBUILT))
        return GeoNearSource([self._request(point) for point in points], self.entity_type)

    def _request(self, point: tuple[float, float]) -> Request:
        url = geo_near_url(self.api, self.entity_type, point, self.radius_m)
        return Request("GET", URL(url, encoded=True), OK)


class GeoNearSource(_Cycle):
    """Counts the Entities of each answer by their id prefix; every
    :data:`FULL_CHECK_EVERY`-th answer is parsed to check types and the page limit."""

    def __init__(self, requests: list[Request], entity_type: str) -> None:
        super().__init__(requests)
        self._type = entity_type
        self._prefix = _id_prefix(entity_type)
        self._answers = 0

    def verify(self, request: Request, body: bytes, tally: Tally) -> str | None:
        found = body.count(self._prefix)
        if found > PAGE_LIMIT:
            return f"{found} Entities in a page limited to {PAGE_LIMIT}"
        tally.results += found
        self._answers += 1
        return None if self._answers % FULL_CHECK_EVERY else self._check_page(body, found)

    def _check_page(self, body: bytes, found: int) -> str | None:
        entities = orjson.loads(body)
        if not isinstance(entities, list) or len(entities) != found:
            return f"answer is not a JSON array of {found} Entities: {body[:200]!r}"
        if any(entity.get("type") != self._type for entity in entities):
            return f"answer holds Entities whose type is not {self._type}"
        return None


def _id_prefix(entity_type: str) -> bytes:
    """Bytes found once per Entity of ``entity_type`` in an answer: its id's prefix."""
    return f'"urn:ngsi-ld:{entity_type}:'.encode()


def random_point(rng: random.Random) -> tuple[float, float]:
    lon = AREA_CENTER[0] + rng.uniform(-AREA_HALF_SPAN, AREA_HALF_SPAN)
    lat = AREA_CENTER[1] + rng.uniform(-AREA_HALF_SPAN, AREA_HALF_SPAN)
    return round(lon, 6), round(lat, 6)


def query_q_url(api: str, entity_type: str, device_id: str) -> str:
    # GS CIM 009 clause 4.9: a Relationship compares its object with an unquoted URI.
    return _entities_url(api, type=entity_type, q=f"refDevice=={device_id}", limit=PAGE_LIMIT)


def geo_near_url(api: str, entity_type: str, point: tuple[float, float], radius_m: int) -> str:
    return _entities_url(
        api,
        type=entity_type,
        georel=f"near;maxDistance=={radius_m}",
        geometry="Point",
        coordinates=f"[{point[0]},{point[1]}]",
        limit=PAGE_LIMIT,
    )


def count_url(api: str, entity_type: str) -> str:
    return _entities_url(api, type=entity_type, count="true", limit=0)


def _entities_url(api: str, **params: object) -> str:
    # Every reserved character is escaped (";" too), so no parser can split the values.
    return f"{api}/entities?{urlencode(params, quote_via=quote, safe='')}"
