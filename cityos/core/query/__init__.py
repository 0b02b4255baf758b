"""The NGSI-LD query languages: parse request text into ASTs, expand their terms, and
match stored Entities (ETSI GS CIM 009 V1.8.1, clauses 4.9, 4.17, 4.19, 4.21).

Backends translate the same ASTs to SQL (``cityos.storage.sqlite.query_sql``)::

    parse_q / parse_scope_q / parse_types / parse_attrs / parse_pick / parse_omit
        -> AST (raw terms)
    expand_q / expand_types / expand_projection (caller's term -> IRI function)
        -> AST (IRIs)
    match_q / match_scope / match_types / match_attrs, or a backend's SQL
"""

from cityos.core.query.ast import (
    AttrPath,
    CompareOp,
    LiteralKind,
    Projection,
    ProjectionItem,
    QAnd,
    QComparison,
    QExists,
    QLiteral,
    QNode,
    QOr,
    QPattern,
    QRange,
    QValue,
    QValueList,
    ScopeAnd,
    ScopeNode,
    ScopeOr,
    ScopeTerm,
    TypeAnd,
    TypeName,
    TypeNode,
    TypeOr,
)
from cityos.core.query.evaluate import match_attrs, match_q, match_scope, match_types
from cityos.core.query.projection import (
    expand_projection,
    omit_entity,
    parse_attrs,
    parse_omit,
    parse_pick,
    pick_entity,
    select_attrs,
)
from cityos.core.query.q import expand_q, parse_q
from cityos.core.query.scope import parse_scope_q
from cityos.core.query.typeexpr import expand_types, parse_types

__all__ = [
    "AttrPath",
    "CompareOp",
    "LiteralKind",
    "Projection",
    "ProjectionItem",
    "QAnd",
    "QComparison",
    "QExists",
    "QLiteral",
    "QNode",
    "QOr",
    "QPattern",
    "QRange",
    "QValue",
    "QValueList",
    "ScopeAnd",
    "ScopeNode",
    "ScopeOr",
    "ScopeTerm",
    "TypeAnd",
    "TypeName",
    "TypeNode",
    "TypeOr",
    "expand_projection",
    "expand_q",
    "expand_types",
    "match_attrs",
    "match_q",
    "match_scope",
    "match_types",
    "omit_entity",
    "parse_attrs",
    "parse_omit",
    "parse_pick",
    "parse_q",
    "parse_scope_q",
    "parse_types",
    "pick_entity",
    "select_attrs",
]
