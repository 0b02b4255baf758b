"""Field syntax of NGSI-v2 identifiers, and the names v2 may not use.

FIWARE-NGSI v2 "Field syntax restrictions": Entity ids and types, attribute and metadata
names and types are 1 to 256 plain ASCII characters, without control characters,
whitespace, ``&``, ``?``, ``/`` or ``#``. Orion also refuses ``<>"'=;()`` everywhere, as
NGSI-LD does in names (GS CIM 009 clause 4.6.2).

Some names mean something else on the NGSI-LD side of the same store (an Entity member or
an attribute instance member); v2 refuses them with 400, so nothing v2 writes renders as
a clash through NGSI-LD.
"""

from __future__ import annotations

import re

from cityos.errors import BadRequestData

__all__ = [
    "BUILTIN_ATTRS",
    "BUILTIN_METADATA",
    "check_attr_name",
    "check_field",
    "check_metadata_name",
]

_FIELD = re.compile(r"^[\x21-\x7e]{1,256}$")
_FORBIDDEN = re.compile(r"[&?/#<>\"'=;()]")

BUILTIN_ATTRS = frozenset({"dateCreated", "dateModified", "dateExpires"})
BUILTIN_METADATA = frozenset({"dateCreated", "dateModified", "previousValue", "actionType"})
# v2 rule (id, type, geo:distance, *) plus NGSI-LD Entity members.
_RESERVED_ATTRS = frozenset(
    {"id", "type", "geo:distance", "*", "scope", "createdAt", "modifiedAt", "deletedAt"}
)
# NGSI-LD members of an attribute instance; unitCode and observedAt map onto them.
_RESERVED_METADATA = frozenset(
    {
        "*",
        "type",
        "value",
        "object",
        "datasetId",
        "createdAt",
        "modifiedAt",
        "deletedAt",
        "instanceId",
        "objectType",
        "lang",
        "languageMap",
        "json",
        "valueList",
        "objectList",
        "vocab",
    }
)


def check_field(value: object, what: str) -> str:
    if not isinstance(value, str) or not _FIELD.match(value) or _FORBIDDEN.search(value):
        raise BadRequestData(
            f"{what} {value!r} is empty, longer than 256 characters or contains a forbidden character"
        )
    return value


def check_attr_name(name: object) -> str:
    checked = check_field(name, "Attribute name")
    if checked in _RESERVED_ATTRS or checked in BUILTIN_ATTRS:
        raise BadRequestData(f"Attribute name {checked} is reserved")
    return checked


def check_metadata_name(name: object) -> str:
    checked = check_field(name, "Metadata name")
    if checked in _RESERVED_METADATA:
        raise BadRequestData(f"Metadata name {checked} is reserved")
    return checked
