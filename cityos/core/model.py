"""The stored form of an NGSI-LD Entity: what ``core`` hands to storage and gets back.

A request's Entity is expanded once (attribute names and types become IRIs through the
request's @context, see ``cityos.core.jsonld``) into a :data:`StoredEntity`; responses
compact it again. Every backend keeps this shape as one JSON document per Entity, so the
query language can be translated to JSON paths over it (``cityos.core.query``)::

    {
      "id": "urn:ngsi-ld:WaterObserved:001",
      "type": ["https://smartdatamodels.org/dataModel.Environment/WaterObserved"],
      "scope": ["/Kagawa/Takamatsu"],                # optional
      "createdAt": "2026-01-01T00:00:00.000000Z",     # system attributes, always present
      "modifiedAt": "2026-01-01T00:00:00.000000Z",
      "attrs": {
        "<attribute IRI>": [                          # instances; the default one (no datasetId) first
          {
            "type": "Property",                       # or Relationship, GeoProperty, ...
            "value": 20.5,                            # always "value"; see below
            "observedAt": "2026-01-01T00:00:00.000Z",
            "unitCode": "CEL",
            "datasetId": "urn:ngsi-ld:Dataset:a",     # only on non-default instances
            "createdAt": "...", "modifiedAt": "...",
            "attrs": {"<sub-attribute IRI>": [ {...same shape...} ]}   # optional
          }
        ]
      }
    }

Every attribute type keeps its main member under ``"value"`` in the stored form
(a Relationship's ``object``, a LanguageProperty's ``languageMap``, ...): the query
language then has one JSON path per attribute whatever its type, and rendering renames
the member through :data:`VALUE_MEMBER`.

Values are kept as the client sent them (compound values' keys are not expanded; a typed
literal stays ``{"@type": "DateTime", "@value": "..."}``). ``VocabProperty`` vocab values
are kept expanded, since the spec compacts them like types (clause 4.5.21).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

__all__ = [
    "ATTRIBUTE_TYPES",
    "RELATIONSHIP_TYPES",
    "VALUE_MEMBER",
    "now_iso",
    "StoredAttribute",
    "StoredEntity",
]

StoredEntity = dict[str, Any]
StoredAttribute = dict[str, Any]

# GS CIM 009 V1.8.1 clauses 4.5.2-4.5.21: the member that carries each attribute type's value.
VALUE_MEMBER: dict[str, str] = {
    "Property": "value",
    "GeoProperty": "value",
    "Relationship": "object",
    "LanguageProperty": "languageMap",
    "JsonProperty": "json",
    "ListProperty": "valueList",
    "ListRelationship": "objectList",
    "VocabProperty": "vocab",
}

ATTRIBUTE_TYPES = frozenset(VALUE_MEMBER)


def now_iso() -> str:
    """System timestamps (createdAt, modifiedAt, notifiedAt...): UTC with microseconds."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


RELATIONSHIP_TYPES = frozenset({"Relationship", "ListRelationship"})
