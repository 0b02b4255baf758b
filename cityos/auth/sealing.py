"""Personal attribute values encrypted at rest ("sealed").

A stored Entity (``cityos.core.model``) keeps each attribute instance's value under
``"value"``. Sealing replaces the value of every instance of a personal attribute, and of
its sub-attributes, with ``{"@sealed": "<key id>:<base64 of nonce + ciphertext>"}``::

    AES-256-GCM(key, nonce = 12 random bytes, plaintext = orjson(value),
                associated data = [tenant, Entity id, attribute IRI, sub-attribute IRI...])

- The associated data binds a sealed value to its place: copied to another tenant, Entity
  or attribute, it no longer opens (GCM authenticates it), so a database writer cannot
  move a resident's data onto an Entity they can read.
- A random 96-bit nonce per value is safe with one key for about 2**32 values (NIST SP
  800-38D, 8.3); rotate the key long before that.
- The *key id* (the first 8 hex characters of the key's SHA-256) says which key sealed a
  value, so keys can be rotated: ``Sealer([new, old])`` seals with ``new`` and opens what
  either sealed; values sealed with ``old`` are re-sealed with ``new`` when next written.

Only values are sealed: types, ``observedAt``, ``unitCode``, ``datasetId`` and the
attribute names stay readable, so an Entity still renders and filters by them (a ``q`` or
geo-query on a sealed value matches nothing).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeGuard

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cityos.core.model import StoredEntity
from cityos.errors import InternalError

__all__ = ["SEALED", "Sealer", "generate_key", "is_sealed", "key_id"]

SEALED = "@sealed"
KEY_BYTES = 32
NONCE_BYTES = 12

_Attrs = dict[str, list[dict[str, Any]]]
_URLSAFE = str.maketrans("-_", "+/")


def generate_key() -> str:
    """A new random key, base64: what ``cityos keys generate`` writes to the key file."""
    return base64.b64encode(os.urandom(KEY_BYTES)).decode()


def key_id(key: bytes) -> str:
    return hashlib.sha256(key).hexdigest()[:8]


def is_sealed(value: object) -> TypeGuard[dict[str, Any]]:
    """Whether a stored value has the sealed form: ``{"@sealed": "<string>"}`` and nothing
    else."""
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get(SEALED), str)


def _decode_key(text: str) -> bytes:
    """Standard or URL-safe base64, strictly: a stray character is an error, not skipped."""
    text = text.strip().translate(_URLSAFE)
    try:
        key = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("A personal data key must be base64 of 32 bytes") from None
    if len(key) != KEY_BYTES:
        raise ValueError(f"A personal data key must be 32 bytes, not {len(key)}")
    return key


class Sealer:
    """Seals with the first of its keys; opens values sealed with any of them."""

    __slots__ = ("_current", "_ciphers")

    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys:
            raise ValueError("A Sealer needs at least one key")
        self._ciphers: dict[str, AESGCM] = {}
        for key in keys:
            if len(key) != KEY_BYTES:
                raise ValueError(f"A personal data key must be 32 bytes, not {len(key)}")
            self._ciphers.setdefault(key_id(key), AESGCM(key))
        self._current = key_id(keys[0])

    @classmethod
    def from_file(cls, path: str | Path) -> Sealer:
        """From a file holding one raw 32-byte key, or base64 keys one per line (the current
        key first; ``#`` starts a comment)."""
        data = Path(path).read_bytes()
        if len(data) == KEY_BYTES:
            return cls([data])
        try:
            text = data.decode("ascii")
        except UnicodeDecodeError:
            raise ValueError(f"{path} holds neither a raw 32-byte key nor base64 keys") from None
        lines = (line.partition("#")[0].strip() for line in text.splitlines())
        return cls([_decode_key(line) for line in lines if line])

    @classmethod
    def from_env(cls, value: str) -> Sealer:
        """From base64 keys separated by commas or spaces, the current key first."""
        return cls([_decode_key(part) for part in value.replace(",", " ").split()])

    @property
    def key_id(self) -> str:
        """The id of the key values are sealed with."""
        return self._current

    # -- one value -------------------------------------------------------------------------------

    def seal(self, value: Any, place: Sequence[str]) -> dict[str, str]:
        """``{"@sealed": ...}`` for a JSON value at ``place`` (tenant, Entity id, IRIs)."""
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._ciphers[self._current].encrypt(
            nonce, orjson.dumps(value), orjson.dumps(place)
        )
        return {SEALED: f"{self._current}:{base64.b64encode(nonce + sealed).decode()}"}

    def open(self, value: dict[str, Any], place: Sequence[str]) -> Any:
        """The JSON value sealed at ``place``; InternalError (naming the Entity and
        attribute, never the value) when it cannot be opened there with these keys."""
        text = value.get(SEALED)
        kid, _, blob = text.partition(":") if isinstance(text, str) else ("", "", "")
        cipher = self._ciphers.get(kid)
        if cipher is None:
            raise InternalError(f"{_where(place)} was sealed with key {kid!r}, which is not set")
        try:
            data = base64.b64decode(blob, validate=True)
            plain = cipher.decrypt(data[:NONCE_BYTES], data[NONCE_BYTES:], orjson.dumps(place))
            return orjson.loads(plain)
        except (InvalidTag, binascii.Error, ValueError):
            raise InternalError(
                f"{_where(place)} cannot be opened: it was altered or belongs elsewhere"
            ) from None

    # -- Entities --------------------------------------------------------------------------------

    def seal_entity(
        self, entity: StoredEntity, tenant: str, personal: Callable[[str], bool]
    ) -> StoredEntity:
        """A copy of ``entity`` with the values of its personal attributes (and all their
        sub-attributes) sealed; ``entity`` itself when there is nothing to seal.

        A value sealed before, at its place, with the current key, stays as it is (with an
        older key, it is sealed again with the current one). A value
        that only *looks* sealed (a client may send ``{"@sealed": "..."}`` as data) is
        sealed for real, in any attribute: so every sealed-looking value stored is genuine,
        and :meth:`open_entity` gives the client's object back instead of failing."""
        attrs = entity.get("attrs")
        if not attrs:
            return entity
        sealed = self._seal_attrs(attrs, (tenant, entity["id"]), personal, False)
        return entity if sealed is attrs else {**entity, "attrs": sealed}

    def open_entity(self, entity: StoredEntity, tenant: str) -> StoredEntity:
        """A copy of ``entity`` with every sealed value opened; ``entity`` itself when it
        has none. Raises InternalError for a value that does not open."""
        attrs = entity.get("attrs")
        if not attrs or not _has_sealed(attrs):
            return entity
        return {**entity, "attrs": self._open_attrs(attrs, (tenant, entity["id"]))}

    def _seal_attrs(
        self,
        attrs: _Attrs,
        place: tuple[str, ...],
        personal: Callable[[str], bool],
        inherited: bool,
    ) -> _Attrs:
        """``attrs`` with personal values sealed: the same object when nothing changed, so
        an Entity without personal data costs a ``personal`` call and a glance per
        attribute, and no copy."""
        out: _Attrs | None = None
        for iri, instances in attrs.items():
            whole = inherited or personal(iri)
            if not whole:
                for inst in instances:  # inline, not a call: the common case must be cheap
                    if "attrs" in inst or (
                        (v := inst.get("value")).__class__ is dict and SEALED in v
                    ):
                        break
                else:
                    continue
            new = self._seal_instances(instances, (*place, iri), personal, whole)
            if new is not instances:
                out = dict(attrs) if out is None else out
                out[iri] = new
        return attrs if out is None else out

    def _seal_instances(
        self,
        instances: list[dict[str, Any]],
        place: tuple[str, ...],
        personal: Callable[[str], bool],
        whole: bool,
    ) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] | None = None
        for i, inst in enumerate(instances):
            copy = inst
            if "value" in inst:
                value = self._stored(inst["value"], place, whole)
                if value is not inst["value"]:
                    copy = {**inst, "value": value}
            sub = inst.get("attrs")
            if sub:
                sealed_sub = self._seal_attrs(sub, place, personal, whole)
                if sealed_sub is not sub:
                    copy = {**copy, "attrs": sealed_sub}
            if copy is not inst:
                out = list(instances) if out is None else out
                out[i] = copy
        return instances if out is None else out

    def _stored(self, value: Any, place: tuple[str, ...], whole: bool) -> Any:
        """What to store for ``value``: ``value`` itself when it stays as it is."""
        if not is_sealed(value):
            return self.seal(value, place) if whole else value
        try:
            plain = self.open(value, place)
        except InternalError:
            return self.seal(value, place)  # a look-alike sent as data, not ours
        if value[SEALED].startswith(self._current + ":"):
            return value
        return self.seal(plain, place)  # sealed with an older key: re-sealed with the current

    def _open_attrs(self, attrs: _Attrs, place: tuple[str, ...]) -> _Attrs:
        out = dict(attrs)
        for iri, instances in attrs.items():
            if _has_sealed({iri: instances}):
                out[iri] = [self._open_instance(inst, (*place, iri)) for inst in instances]
        return out

    def _open_instance(self, inst: dict[str, Any], place: tuple[str, ...]) -> dict[str, Any]:
        copy = dict(inst)
        value = inst.get("value")
        if is_sealed(value):
            copy["value"] = self.open(value, place)
        sub = inst.get("attrs")
        if sub and _has_sealed(sub):
            copy["attrs"] = self._open_attrs(sub, place)
        return copy


def _has_sealed(attrs: _Attrs) -> bool:
    for instances in attrs.values():
        for inst in instances:
            value = inst.get("value")
            if value.__class__ is dict and SEALED in value and is_sealed(value):
                return True
            sub = inst.get("attrs")
            if sub and _has_sealed(sub):
                return True
    return False


def _where(place: Iterable[str]) -> str:
    _, entity_id, *path = place
    return f"Attribute {'/'.join(path)} of Entity {entity_id}"
