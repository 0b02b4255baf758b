"""How NGSI-v2 names meet the NGSI-LD store: one default @context and the id rule.

v2 has no @context. Entity types, attribute and metadata names are expanded to IRIs
through one compiled @context (setting ``v2_context``; empty: the NGSI-LD core context,
whose ``@vocab`` makes ``Room`` ``https://uri.etsi.org/ngsi-ld/default-context/Room``),
and compacted back through it on the way out; an IRI the context has no term for is
shown in full. The context is compiled once by the registry (``cityos.core.contexts``)
and cached, like an NGSI-LD request's.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from cityos.core.contexts import ContextRegistry
from cityos.core.jsonld import CompiledContext, is_absolute_iri
from cityos.errors import BadRequestData
from cityos.v2.ids import IdMapping

__all__ = ["Names", "load_names", "orion_time"]

_MICROS = re.compile(r"^(.*T\d{2}:\d{2}:\d{2})\.(\d{3})\d*Z$")


@dataclass(frozen=True, slots=True)
class Names:
    ctx: CompiledContext
    ids: IdMapping

    def expand(self, name: str) -> str:
        return self.ctx.expand(name)

    def compact(self, iri: str) -> str:
        return self.ctx.compact(iri)

    def entity_type(self, name: str) -> str:
        iri = self.ctx.expand(name)
        if not is_absolute_iri(iri):
            raise BadRequestData(f"Entity type {name!r} does not expand to an IRI")
        return iri


async def load_names(registry: ContextRegistry, context: str, id_prefix: str) -> Names:
    compiled = await registry.compile(context or None)
    return Names(compiled, IdMapping(id_prefix))


def orion_time(stored: str) -> str:
    """A stored system time (microseconds) as Orion shows times: milliseconds, ``Z``."""
    match = _MICROS.match(stored)
    if match:
        return f"{match[1]}.{match[2]}Z"
    try:
        parsed = dt.datetime.fromisoformat(stored.replace("Z", "+00:00"))
    except ValueError:
        return stored
    return (
        parsed.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.")
        + f"{parsed.microsecond // 1000:03d}Z"
    )
