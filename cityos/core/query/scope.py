"""Parser of the NGSI-LD Scope Query Language, ``scopeQ`` (GS CIM 009 V1.8.1, clause 4.19).

The grammar accepted here, a superset of the clause's ABNF::

    ScopesQ = AndTerm *(("|" / ",") AndTerm)   ; "," is an alternative OR
    AndTerm = Primary *(";" Primary)
    Primary = "(" ScopesQ ")" / ScopeQ
    ScopeQ  = "/#"                               ; any non-empty scope
            / 1*("/" Level) ["/#"]               ; "/#": the scope and all below it
    Level   = "+" / letter *(letter / digit / "_")   ; "+": exactly one level

The clause only allows ``;`` inside parentheses; AND binding tighter than OR, as in q,
gives the same meaning to every text it accepts.
"""

from __future__ import annotations

import re

from cityos.core.query.ast import ScopeAnd, ScopeNode, ScopeOr, ScopeTerm
from cityos.core.query.q import Cursor, Logic, parse_logical

__all__ = ["parse_scope_q", "scope_term_regex"]


def parse_scope_q(text: str) -> ScopeNode:
    """Parse a ``scopeQ`` expression; raises ``BadRequestData`` for invalid text."""
    return parse_logical(Cursor(text, "scopeQ expression"), _SCOPE_LOGIC)


def scope_term_regex(term: ScopeTerm) -> str:
    """A Python regex (also given to SQLite's ``regexp``) matching the scopes ``term``
    selects; ``+`` is one level, a trailing ``#`` the scope itself and all below it."""
    parts = ["[^/]+" if level == "+" else re.escape(level) for level in term.levels]
    tail = "(?:/.*)?" if term.descendants else ""
    return "(?s)^/" + "/".join(parts) + tail + r"\Z"


def _parse_term(cursor: Cursor) -> ScopeNode:
    cursor.expect("/", "expected '/' to start a scope")
    if cursor.eat("#"):
        return ScopeTerm((), descendants=True)
    levels = [_parse_level(cursor)]
    while cursor.eat("/"):
        if cursor.eat("#"):
            return ScopeTerm(tuple(levels), descendants=True)
        levels.append(_parse_level(cursor))
    return ScopeTerm(tuple(levels))


def _parse_level(cursor: Cursor) -> str:
    if cursor.eat("+"):
        return "+"
    return cursor.word("a scope level, '+' or '#'")


_SCOPE_LOGIC: Logic[ScopeNode] = Logic(
    atom=_parse_term, and_type=ScopeAnd, or_type=ScopeOr, or_ops="|,"
)
