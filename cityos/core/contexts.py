"""@context resolution and the JSON-LD context registry (GS CIM 009 V1.8.1 clauses 5.5.7, 5.13).

A request's @context (Link header, inline ``@context`` member, a URL or an array of both)
is resolved to local context objects, compiled once and cached by its exact value. URLs are
resolved in this order, so that a City OS inside a closed network needs no internet:

1. the NGSI-LD core contexts v1.3-v1.9, shipped in ``cityos/contexts/``;
2. contexts hosted by this City OS (``POST /jsonldContexts``) or cached earlier
   (fetched once, or preloaded with ``cityos contexts add URL FILE``), kept in the store;
3. a fetch over HTTP(S) through the injected ``fetch`` function; the result is cached.

A context that cannot be obtained raises LdContextNotAvailable (clause 5.5.7.1).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Protocol

import orjson

from cityos.core.jsonld import CompiledContext, compile_context, is_absolute_iri
from cityos.core.model import now_iso
from cityos.errors import BadRequestData, InvalidRequest, LdContextNotAvailable, ResourceNotFound

__all__ = [
    "CORE_CONTEXT_URL",
    "ContextEntry",
    "ContextRegistry",
    "ContextStore",
    "ContextValue",
    "core_context_urls",
]

ContextValue = str | dict[str, Any] | list[Any]
Fetch = Callable[[str], Awaitable[bytes]]

CORE_BASE = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v"
CORE_VERSIONS = ("1.3", "1.4", "1.5", "1.6", "1.7", "1.8", "1.9")
CORE_CONTEXT_URL = CORE_BASE + "1.8.jsonld"
_MAX_DEPTH = 8


def core_context_urls() -> dict[str, str]:
    return {CORE_BASE + v + ".jsonld": v for v in CORE_VERSIONS}


def _load_builtin(version: str) -> Any:
    path = (
        resources.files("cityos")
        / "contexts/uri.etsi.org/ngsi-ld/v1"
        / f"ngsi-ld-core-context-v{version}.jsonld"
    )
    return orjson.loads(path.read_bytes())["@context"]


@dataclass
class ContextEntry:
    """One context the registry knows: Hosted, Cached or the built-in core (clause 5.13.2)."""

    url: str
    local_id: str
    kind: str
    document: Any  # the value of the document's "@context" member
    created_at: str = field(default_factory=now_iso)
    hits: int = 0
    last_usage: str | None = None

    def details(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "URL": self.url,
            "localId": self.local_id,
            "kind": self.kind,
            "createdAt": self.created_at,
        }
        if self.kind in ("Cached", "Hosted"):
            out["lastUsage"] = self.last_usage or self.created_at
            out["numberOfHits"] = self.hits
        return out


class ContextStore(Protocol):
    """What the registry needs from storage to keep hosted and cached contexts."""

    async def save_context(self, entry: ContextEntry) -> None: ...
    async def delete_context(self, url: str) -> None: ...
    async def load_contexts(self) -> list[ContextEntry]: ...


class ContextRegistry:
    def __init__(self, store: ContextStore, fetch: Fetch, base_url: str = "") -> None:
        self._store = store
        self._fetch = fetch
        self.base_url = base_url.rstrip("/")
        self._entries: dict[str, ContextEntry] = {}
        self._compiled: dict[str, CompiledContext] = {}
        self._core = _load_builtin(CORE_CONTEXT_URL[len(CORE_BASE) : -len(".jsonld")])
        self._builtin = {
            url: ContextEntry(url, "core-v" + v, "Cached", None)
            for url, v in core_context_urls().items()
        }
        self._locks: dict[str, asyncio.Lock] = {}
        self.default = compile_context([], self._core)

    async def load(self) -> None:
        for entry in await self._store.load_contexts():
            self._entries[entry.url] = entry

    # -- resolution -----------------------------------------------------------------

    async def compile(self, value: ContextValue | None) -> CompiledContext:
        """The compiled context for a request's @context (None: the core context alone)."""
        if value is None or value == [] or value == CORE_CONTEXT_URL:
            return self.default
        key = (
            value
            if isinstance(value, str)
            else orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
        )
        hit = self._compiled.get(key)
        if hit is not None:
            self._touch(value)
            return hit
        locals_: list[Mapping[str, Any]] = []
        await self._resolve(value, locals_, 0)
        compiled = compile_context(locals_, self._core)
        if len(self._compiled) > 1000:
            self._compiled.clear()
        self._compiled[key] = compiled
        return compiled

    def _touch(self, value: ContextValue) -> None:
        for url in (
            [value]
            if isinstance(value, str)
            else [v for v in value if isinstance(v, str)]
            if isinstance(value, list)
            else []
        ):
            entry = self._entries.get(url)
            if entry is not None:
                entry.hits += 1
                entry.last_usage = now_iso()

    async def _resolve(self, value: Any, out: list[Mapping[str, Any]], depth: int) -> None:
        if depth > _MAX_DEPTH:
            raise InvalidRequest("The @context nests more than 8 levels of remote contexts")
        if value is None:
            return
        if isinstance(value, list):
            for item in value:
                await self._resolve(item, out, depth)
        elif isinstance(value, str):
            await self._resolve(await self.document(value), out, depth + 1)
        elif isinstance(value, dict):
            out.append(value)
        else:
            raise BadRequestData(f"Invalid @context member: {orjson.dumps(value).decode()[:100]}")

    async def document(self, url: str) -> Any:
        """The @context value behind a URL, from the built-ins, the registry or the network."""
        version = core_context_urls().get(url)
        if version is not None:
            return _load_builtin(version)
        entry = self._entries.get(url) or self._hosted_by_path(url)
        if entry is not None:
            entry.hits += 1
            entry.last_usage = now_iso()
            return entry.document
        if not is_absolute_iri(url) or not url.startswith(("http://", "https://")):
            raise BadRequestData(f"@context URL {url!r} is not an absolute http(s) URL")
        lock = self._locks.setdefault(url, asyncio.Lock())
        async with lock:
            entry = self._entries.get(url)
            if entry is None:
                entry = await self._download(url)
        return entry.document

    def _hosted_by_path(self, url: str) -> ContextEntry | None:
        """A hosted context named by a relative URL, or by any URL ending in our hosting path
        (clients join base URL and Location differently; the local id is unique)."""
        _, sep, local_id = url.rpartition("/jsonldContexts/")
        if not sep:
            return None
        return next(
            (e for e in self._entries.values() if e.kind == "Hosted" and e.local_id == local_id),
            None,
        )

    async def _download(self, url: str) -> ContextEntry:
        body = await self._fetch(url)
        try:
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise LdContextNotAvailable(f"@context {url} is not valid JSON") from exc
        if not isinstance(parsed, dict) or "@context" not in parsed:
            raise LdContextNotAvailable(f"@context {url} has no @context member")
        entry = ContextEntry(url, uuid.uuid4().hex, "Cached", parsed["@context"])
        self._entries[url] = entry
        await self._store.save_context(entry)
        return entry

    # -- the /jsonldContexts registry (clause 5.13) ------------------------------------

    def entries(self, kind: str | None = None) -> list[ContextEntry]:
        all_entries = [*self._builtin.values(), *self._entries.values()]
        return [e for e in all_entries if kind is None or e.kind == kind]

    def find(self, context_id: str) -> ContextEntry:
        for entry in self.entries():
            if context_id in (entry.local_id, entry.url):
                return entry
        raise ResourceNotFound(f"@context {context_id} does not exist")

    def builtin_document(self, entry: ContextEntry) -> Any:
        return (
            _load_builtin(entry.local_id[len("core-v") :])
            if entry.document is None
            else entry.document
        )

    async def add_implicit(self, document: Any) -> ContextEntry:
        """An ImplicitlyCreated context (clause 5.13.2): the inline or composite @context a
        Subscription was created with, hosted so that it has a URL of its own."""
        for entry in self._entries.values():
            if entry.kind == "ImplicitlyCreated" and entry.document == document:
                return entry
        local_id = uuid.uuid4().hex
        entry = ContextEntry(
            f"{self.base_url}/ngsi-ld/v1/jsonldContexts/{local_id}",
            local_id,
            "ImplicitlyCreated",
            document,
        )
        self._entries[entry.url] = entry
        await self._store.save_context(entry)
        return entry

    async def add_hosted(self, document: Any) -> ContextEntry:
        """Hosts a context (clause 5.13.2); the remote contexts it refers to are cached now."""
        for item in document if isinstance(document, list) else []:
            if isinstance(item, str):
                await self.document(item)
        local_id = uuid.uuid4().hex
        entry = ContextEntry(
            f"{self.base_url}/ngsi-ld/v1/jsonldContexts/{local_id}", local_id, "Hosted", document
        )
        self._entries[entry.url] = entry
        await self._store.save_context(entry)
        return entry

    async def add_cached(self, url: str, document: Any) -> ContextEntry:
        """Preloads a context under its public URL (``cityos contexts add URL FILE``)."""
        entry = ContextEntry(url, uuid.uuid4().hex, "Cached", document)
        self._entries[url] = entry
        self._compiled.clear()
        await self._store.save_context(entry)
        return entry

    async def delete(self, context_id: str, reload: bool = False) -> None:
        """DELETE /jsonldContexts/{id} (clause 5.13.5): delete, or with reload fetch again."""
        try:
            entry = self.find(context_id)
        except ResourceNotFound:
            if reload:
                raise BadRequestData(
                    f"@context {context_id} is not cached, so it cannot be reloaded"
                ) from None
            raise
        if entry.url in self._builtin:
            if reload:  # the built-in copy is what a reload would fetch
                return
            raise BadRequestData("The NGSI-LD core @context cannot be deleted")
        if reload:
            if entry.kind != "Cached":
                raise BadRequestData(
                    f"@context {context_id} is {entry.kind}; only Cached contexts reload"
                )
            fresh = await self._download(entry.url)
            fresh.local_id, fresh.created_at = entry.local_id, entry.created_at
            await self._store.save_context(fresh)
        else:
            self._entries.pop(entry.url, None)
            await self._store.delete_context(entry.url)
        self._compiled.clear()
