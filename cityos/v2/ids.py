"""NGSI-v2 Entity ids <-> NGSI-LD Entity ids: a reversible rule.

NGSI-LD requires an Entity id to be an absolute URI (GS CIM 009 clause 4.5.1); a v2 id is
free text (``Room1``). With the prefix ``P`` (setting ``v2_id_prefix``, default
``urn:ngsi-v2:``)::

    to_ld(X)   = X        if X is an absolute URI that does not look encoded
               = P + X    otherwise (``Room1`` -> ``urn:ngsi-v2:Room1``)
    from_ld(I) = I[len(P):]  if I looks encoded
               = I           otherwise

where "looks encoded" means: starts with ``P`` and the rest is not an absolute URI, or
itself starts with ``P``. So a v2 client's URN ids (``urn:ngsi-ld:Room:1``) are the same
id in both APIs, every NGSI-LD id shows in v2 as itself, and ``from_ld(to_ld(X)) == X``
for every v2 id, including ``urn:ngsi-v2:Room1`` written through v2 (stored
``urn:ngsi-v2:urn:ngsi-v2:Room1``). The only ids v2 cannot name exactly are NGSI-LD ids
``P + <absolute URI>`` (``urn:ngsi-v2:urn:x``), which v2 never creates; v2 shows them as
they are.
"""

from __future__ import annotations

import re

from cityos.core.jsonld import is_absolute_iri

__all__ = ["IdMapping"]


class IdMapping:
    """The id rule for one prefix; also rewrites ``idPattern`` regexes to stored ids."""

    __slots__ = ("prefix",)

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def _encoded(self, ld_id: str) -> bool:
        if not ld_id.startswith(self.prefix):
            return False
        rest = ld_id[len(self.prefix) :]
        return bool(rest) and (not is_absolute_iri(rest) or rest.startswith(self.prefix))

    def to_ld(self, v2_id: str) -> str:
        if is_absolute_iri(v2_id) and not self._encoded(v2_id):
            return v2_id
        return self.prefix + v2_id

    def from_ld(self, ld_id: str) -> str:
        return ld_id[len(self.prefix) :] if self._encoded(ld_id) else ld_id

    def pattern(self, v2_pattern: str) -> str:
        """A regex over stored ids selecting the Entities whose v2 id matches ``v2_pattern``
        (searched, as Orion does). The prefix is consumed atomically first, so the pattern
        never matches inside it; a leading ``^`` anchors right after it."""
        head = "^(?>(?:" + re.escape(self.prefix) + ")?)"
        if v2_pattern.startswith("^"):
            return head + "(?:" + v2_pattern[1:] + ")"
        return head + ".*?(?:" + v2_pattern + ")"
