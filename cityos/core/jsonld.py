"""A compiled @context: the term <-> IRI mapping NGSI-LD needs, without a JSON-LD processor.

NGSI-LD only ever expands and compacts *names* (attribute names, entity types, a few
IRI-valued members such as a VocabProperty's vocab); values are kept as sent. So a context
is compiled once into dictionaries and every request maps names in about a microsecond,
instead of running a general JSON-LD expand/compact (about 1 ms per entity with pyld).

Compilation follows the JSON-LD 1.1 context processing rules that matter for names:
term definitions (string or ``{"@id": ...}``), compact IRIs through prefixes, ``@vocab``,
and nested contexts. The NGSI-LD core context is always applied last, so user contexts
cannot redefine core terms (GS CIM 009 clause 5.5.7).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cityos.errors import InvalidRequest

__all__ = ["CompiledContext", "compile_context", "is_absolute_iri"]

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:")
# JSON-LD 1.1 clause 4.2.2: a simple term whose IRI ends with a gen-delim is a prefix.
_GEN_DELIMS = (":", "/", "?", "#", "[", "]", "@")


def is_absolute_iri(value: str) -> bool:
    return bool(_SCHEME.match(value)) and not value.startswith("_:")


@dataclass
class _Builder:
    terms: dict[str, str] = field(default_factory=dict)
    prefixes: dict[str, str] = field(default_factory=dict)
    vocab_valued: set[str] = field(default_factory=set)
    vocab: str | None = None

    def add(self, local: Mapping[str, Any]) -> None:
        if "@vocab" in local:
            v = local["@vocab"]
            self.vocab = None if v is None else self._resolve(str(v), local)
        for term, definition in local.items():
            if term.startswith("@"):
                continue
            self._define(term, definition, local)

    def _define(self, term: str, definition: Any, local: Mapping[str, Any]) -> None:
        if definition is None:
            self.terms.pop(term, None)
            self.prefixes.pop(term, None)
            return
        simple = isinstance(definition, str)
        if simple:
            iri_text = definition
        elif isinstance(definition, dict):
            iri_text = definition.get("@id", term)
            if definition.get("@type") == "@vocab":
                self.vocab_valued.add(term)
            if iri_text is None:
                return
        else:
            raise InvalidRequest(
                f"Term definition of {term!r} in @context is not a string or an object"
            )
        iri = self._resolve(str(iri_text), local, term)
        self.terms[term] = iri
        if (
            simple or (isinstance(definition, dict) and definition.get("@prefix"))
        ) and iri.endswith(_GEN_DELIMS):
            self.prefixes[term] = iri

    def _resolve(self, value: str, local: Mapping[str, Any], defining: str | None = None) -> str:
        if value.startswith("@"):
            return value
        if ":" in value:
            prefix, _, suffix = value.partition(":")
            if suffix.startswith("//"):
                return value
            if prefix != defining:
                pdef = local.get(prefix)
                if isinstance(pdef, str) and prefix not in self.terms:
                    return self._resolve(pdef, local, prefix) + suffix
                if isinstance(pdef, dict) and isinstance(pdef.get("@id"), str):
                    return self._resolve(pdef["@id"], local, prefix) + suffix
                if prefix in self.terms:
                    return self.terms[prefix] + suffix
            return value
        if value in self.terms and value != defining:
            return self.terms[value]
        if value in local and value != defining:
            d = local[value]
            if isinstance(d, str):
                return self._resolve(d, local, value)
        if self.vocab is not None:
            return self.vocab + value
        return value


class CompiledContext:
    """Maps terms to IRIs and back for one effective @context (user contexts + core)."""

    __slots__ = (
        "_compact_cache",
        "_expand_cache",
        "prefixes",
        "reverse",
        "terms",
        "vocab",
        "vocab_valued",
    )

    def __init__(self, builder: _Builder) -> None:
        self.terms = builder.terms
        self.prefixes = builder.prefixes
        self.vocab = builder.vocab
        self.vocab_valued = frozenset(builder.vocab_valued)
        self.reverse = _inverse(builder.terms)
        self._expand_cache: dict[str, str] = {}
        self._compact_cache: dict[str, str] = {}

    def expand(self, term: str) -> str:
        """Expands an attribute name or type (GS CIM 009 clause 5.5.7, JSON-LD IRI expansion)."""
        hit = self._expand_cache.get(term)
        if hit is not None:
            return hit
        iri = self._expand(term)
        if len(self._expand_cache) < 100_000:
            self._expand_cache[term] = iri
        return iri

    def _expand(self, term: str) -> str:
        iri = self.terms.get(term)
        if iri is not None:
            return iri
        if ":" in term:
            prefix, _, suffix = term.partition(":")
            if not suffix.startswith("//") and prefix in self.prefixes:
                return self.prefixes[prefix] + suffix
            if is_absolute_iri(term):
                return term
        if self.vocab is not None:
            return self.vocab + term
        return term

    def compact(self, iri: str) -> str:
        """Compacts an IRI to the shortest term or compact IRI the context allows."""
        hit = self._compact_cache.get(iri)
        if hit is not None:
            return hit
        term = self._compact(iri)
        if len(self._compact_cache) < 100_000:
            self._compact_cache[iri] = term
        return term

    def _compact(self, iri: str) -> str:
        term = self.reverse.get(iri)
        if term is not None:
            return term
        if self.vocab and iri.startswith(self.vocab):
            suffix = iri[len(self.vocab) :]
            if suffix and ":" not in suffix and suffix not in self.terms:
                return suffix
        best: str | None = None
        for prefix, base in self.prefixes.items():
            if iri.startswith(base) and len(iri) > len(base):
                curie = prefix + ":" + iri[len(base) :]
                if curie not in self.terms and (
                    best is None or (len(curie), curie) < (len(best), best)
                ):
                    best = curie
        return best if best is not None else iri


def _inverse(terms: Mapping[str, str]) -> dict[str, str]:
    # JSON-LD inverse context: the shortest term wins, then the lexicographically least.
    reverse: dict[str, str] = {}
    for term, iri in terms.items():
        if iri.startswith("@"):
            continue
        current = reverse.get(iri)
        if current is None or (len(term), term) < (len(current), current):
            reverse[iri] = term
    return reverse


def compile_context(user: Iterable[Mapping[str, Any]], core: Mapping[str, Any]) -> CompiledContext:
    """Compiles resolved local contexts (URLs already replaced by their objects) in order,
    then the core context on top."""
    builder = _Builder()
    for local in user:
        builder.add(local)
    builder.add(core)
    return CompiledContext(builder)
