"""Deterministic sensor-observation Entities for the benchmark.

Entity ``index`` (1-based) is a pure function of ``(seed, index)``, so the driver can
rebuild any Entity, its location or the answer to a query without keeping the data set.
Shapes follow the Smart Data Models examples ``Environment/WaterObserved`` and
``Transportation/CrowdFlowObserved`` (their ``example-normalized.json``), rewritten in
NGSI-LD normalized form: Properties with ``unitCode`` and ``observedAt``, a GeoProperty
``location`` Point around Takamatsu and a Relationship ``refDevice``.

Odd indexes are WaterObserved, even ones CrowdFlowObserved. Within each type, ``refDevice``
points at one of ``ordinals // 100`` Devices, each shared by exactly
:data:`DEVICE_GROUP_SIZE` Entities spread over the whole load order, so
``q=refDevice==<device>`` selects exactly 100 Entities and leans on no insertion locality.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

__all__ = [
    "AREA_CENTER",
    "AREA_HALF_SPAN",
    "DEVICE_GROUP_SIZE",
    "TYPES",
    "Dataset",
    "Entity",
    "area_m2",
    "distance_m",
]

Entity = dict[str, Any]

TYPES = ("WaterObserved", "CrowdFlowObserved")
DEVICE_PREFIX = {"WaterObserved": "water", "CrowdFlowObserved": "crowd"}
DEVICE_GROUP_SIZE = 100

# Takamatsu, Kagawa: a city-sized square of +-0.1 degree (about 18 km x 22 km).
AREA_CENTER = (134.05, 34.34)
AREA_HALF_SPAN = 0.1
EARTH_RADIUS_M = 6_371_008.8
_OBSERVED_FROM = datetime(2024, 4, 1, tzinfo=UTC)
_MONTH_S = 30 * 86_400


@dataclass(frozen=True)
class Dataset:
    """``size`` Entities, indexes ``1..size``, half of each type."""

    size: int
    seed: int = 20240401

    def entity_type(self, index: int) -> str:
        return TYPES[(index - 1) % 2]

    def entity_id(self, index: int, series: str = "bench") -> str:
        return f"urn:ngsi-ld:{self.entity_type(index)}:{series}-{index:06d}"

    def type_size(self, entity_type: str) -> int:
        """How many of the ``size`` Entities have ``entity_type``."""
        first = TYPES.index(entity_type) + 1
        return 0 if self.size < first else (self.size - first) // 2 + 1

    def device_count(self, entity_type: str) -> int:
        """Devices of ``entity_type`` shared by exactly :data:`DEVICE_GROUP_SIZE` Entities."""
        return self.type_size(entity_type) // DEVICE_GROUP_SIZE

    def device_id(self, entity_type: str, device: int) -> str:
        return f"urn:ngsi-ld:Device:{DEVICE_PREFIX[entity_type]}-{device:05d}"

    def device_members(self, entity_type: str, device: int) -> list[str]:
        """The ids of the Entities whose ``refDevice`` is ``device``."""
        devices = self.device_count(entity_type)
        offset = TYPES.index(entity_type) + 1
        ordinals = range(device, devices * DEVICE_GROUP_SIZE, devices)
        return [self.entity_id(2 * ordinal + offset) for ordinal in ordinals]

    def location(self, index: int) -> tuple[float, float]:
        """``(longitude, latitude)`` of Entity ``index``, uniform over the area."""
        return _location(self._rng(index))

    def entity(self, index: int, series: str = "bench") -> Entity:
        """Entity ``index`` in normalized form; ``series`` other than "bench" gets its own
        ids and Devices, so it never changes what the benchmark's queries select."""
        entity_type = self.entity_type(index)
        rng = self._rng(index)
        lon, lat = _location(rng)
        observed_at = _timestamp(rng.randrange(_MONTH_S))
        common: Entity = {
            "id": self.entity_id(index, series),
            "type": entity_type,
            "name": _property(f"TKM-{DEVICE_PREFIX[entity_type]}-{index:06d}"),
            "location": {
                "type": "GeoProperty",
                "value": {"type": "Point", "coordinates": [lon, lat]},
            },
            "refDevice": {"type": "Relationship", "object": self._device_of(index, series)},
            "dateObserved": _property({"@type": "DateTime", "@value": observed_at}),
        }
        measures = _water(rng, observed_at) if index % 2 else _crowd(rng, observed_at)
        return common | measures

    def _device_of(self, index: int, series: str) -> str:
        entity_type = self.entity_type(index)
        ordinal = (index - 1) // 2
        devices = self.device_count(entity_type)
        if series == "bench" and ordinal < devices * DEVICE_GROUP_SIZE:
            return self.device_id(entity_type, ordinal % devices)
        return f"urn:ngsi-ld:Device:{series}-{DEVICE_PREFIX[entity_type]}-{ordinal:06d}"

    def _rng(self, index: int) -> random.Random:
        return random.Random(self.seed * 1_000_003 + index)


def area_m2() -> float:
    """Surface of the benchmark area, on a sphere."""
    lat = math.radians(AREA_CENTER[1])
    span = math.radians(2 * AREA_HALF_SPAN)
    return (EARTH_RADIUS_M * span) * (EARTH_RADIUS_M * span * math.cos(lat))


def distance_m(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Great-circle (haversine) distance between two ``(lon, lat)`` points."""
    lon1, lat1, lon2, lat2 = map(math.radians, (*a, *b))
    h = math.sin((lat2 - lat1) / 2) ** 2
    h += math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(math.sqrt(h))


def _location(rng: random.Random) -> tuple[float, float]:
    lon = AREA_CENTER[0] + rng.uniform(-AREA_HALF_SPAN, AREA_HALF_SPAN)
    lat = AREA_CENTER[1] + rng.uniform(-AREA_HALF_SPAN, AREA_HALF_SPAN)
    return round(lon, 6), round(lat, 6)


def _timestamp(offset_s: int) -> str:
    return (_OBSERVED_FROM + timedelta(seconds=offset_s)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _property(value: Any) -> Entity:
    return {"type": "Property", "value": value}


def _measure(value: float, unit_code: str, observed_at: str | None = None) -> Entity:
    measure: Entity = {"type": "Property", "value": value, "unitCode": unit_code}
    if observed_at is not None:
        measure["observedAt"] = observed_at
    return measure


def _water(rng: random.Random, observed_at: str) -> Entity:
    return {
        "waterLevel": _measure(round(rng.uniform(0, 5), 2), "MTR", observed_at),
        "flow": _measure(round(rng.uniform(0, 40), 2), "MQS"),
        "height": _measure(round(rng.uniform(0, 6), 2), "MTR"),
    }


def _crowd(rng: random.Random, observed_at: str) -> Entity:
    people = rng.randrange(0, 400)
    return {
        "peopleCount": _measure(people, "C62", observed_at),
        "peopleCountTowards": _measure(rng.randrange(0, people + 1), "C62"),
        "direction": _property(rng.choice(("inbound", "outbound"))),
        "congested": _property(people > 300),
    }
