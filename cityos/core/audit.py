"""The tamper-evident audit log: a hash chain over the records, and its verification.

Each record commits to everything before it::

    hash(n) = SHA-256( prev(n) || canonical(entry(n), n) ),   prev(n) = hash(n - 1)
    prev(1) = GENESIS = "0" * 64

``canonical`` is the entry's fields and its ``seq`` as JSON with sorted keys and no
whitespace (UTF-8), so the hash does not depend on how a store keeps the columns. Editing
a record changes its hash; deleting or reordering records breaks a link or leaves a gap
in ``seq``. What a chain alone cannot show is records removed from its *end*: the shorter
log is a valid chain too. So an auditor keeps the head hash that ``cityos audit verify``
prints and passes it back (``--expect-head``): if that record is no longer in the log, the
log was truncated or rewritten. (docs/howto/audit.md)

Pure: no SQL, no I/O. The stores append with :func:`chain_hash` inside their write
transaction; ``cityos audit verify`` streams the log through :class:`Verifier`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from cityos.storage.base import AuditEntry, AuditRecord

__all__ = [
    "GENESIS",
    "Verifier",
    "VerifyReport",
    "canonical",
    "chain",
    "chain_hash",
    "doc_to_record",
    "entry_to_doc",
    "verify",
]

GENESIS = "0" * 64


def canonical(entry: AuditEntry, seq: int) -> bytes:
    """The bytes a record's hash covers: every field of the entry and ``seq``."""
    return orjson.dumps(
        {
            "seq": seq,
            "at": entry.at,
            "action": entry.action,
            "actor": entry.actor,
            "tenant": entry.tenant,
            "target": entry.target,
            "person": entry.person,
            "detail": entry.detail,
        },
        option=orjson.OPT_SORT_KEYS,
    )


def chain_hash(prev: str, seq: int, entry: AuditEntry) -> str:
    """The hex SHA-256 of record ``seq``, linked to the hash ``prev`` of the one before."""
    digest = hashlib.sha256(prev.encode("ascii"))
    digest.update(canonical(entry, seq))
    return digest.hexdigest()


def chain(
    entries: Iterable[AuditEntry], head_seq: int = 0, head: str = GENESIS
) -> list[AuditRecord]:
    """The records that append ``entries`` after the record ``head_seq`` of hash ``head``
    (what a store writes, inside its transaction, after reading its head)."""
    records = []
    for entry in entries:
        head_seq += 1
        digest = chain_hash(head, head_seq, entry)
        records.append(AuditRecord(head_seq, entry, head, digest))
        head = digest
    return records


@dataclass
class VerifyReport:
    """The outcome of a verification: ``problems`` name the ``seq`` of each record at fault.
    ``head``/``head_seq`` are the last record seen, the value an auditor keeps."""

    ok: bool
    checked: int
    problems: list[str] = field(default_factory=list)
    head: str = GENESIS
    head_seq: int = 0


class Verifier:
    """Checks records one at a time, in the order given (``feed``), so a log of any size
    is verified page by page in constant memory; ``report`` ends it.

    Detected: an edited record (its hash does not match its content), a broken link (its
    ``prev`` is not the hash of the record before), missing records (a gap in ``seq``,
    also at the start) and records out of order (``seq`` not increasing). A record out of
    order is reported and then skipped, so the records after it are checked against the
    last record in order. With ``expect_head`` (a hash kept from an earlier verification),
    a log that no longer holds that record is reported as truncated or rewritten."""

    def __init__(self, expect_head: str | None = None) -> None:
        self.expect_head = expect_head
        self.problems: list[str] = []
        self.checked = 0
        self.head_seq = 0
        self.head = GENESIS
        self._seen_expected = expect_head is None

    def feed(self, record: AuditRecord) -> None:
        self.checked += 1
        seq = record.seq
        if chain_hash(record.prev, seq, record.entry) != record.hash:
            self.problems.append(f"seq {seq}: record was edited (its hash does not match)")
        if seq <= self.head_seq:
            self.problems.append(f"seq {seq}: out of order (comes after seq {self.head_seq})")
            return
        if seq > self.head_seq + 1:
            first, last = self.head_seq + 1, seq - 1
            span = f"seq {first}" if first == last else f"seqs {first}-{last}"
            self.problems.append(f"seq {seq}: {span} missing before it")
        elif record.prev != self.head:
            before = f"seq {self.head_seq}" if self.head_seq else "the genesis"
            self.problems.append(f"seq {seq}: broken link (prev is not the hash of {before})")
        self.head_seq, self.head = seq, record.hash
        if record.hash == self.expect_head:
            self._seen_expected = True

    def report(self) -> VerifyReport:
        problems = list(self.problems)
        if not self._seen_expected:
            problems.append(
                f"seq {self.head_seq + 1}: expected head {self.expect_head} is not in the log "
                "(records were removed from its end, or it was rewritten)"
            )
        return VerifyReport(not problems, self.checked, problems, self.head, self.head_seq)


def verify(records: Iterable[AuditRecord], expect_head: str | None = None) -> VerifyReport:
    """Verifies a whole log, oldest first (any iterable: a generator streams)."""
    verifier = Verifier(expect_head)
    for record in records:
        verifier.feed(record)
    return verifier.report()


_FIELDS = ("at", "action", "actor", "tenant", "target", "person")


def entry_to_doc(record: AuditRecord) -> dict[str, Any]:
    """A record as one JSON object (one line of an export)."""
    entry = record.entry
    doc: dict[str, Any] = {"seq": record.seq}
    doc.update((name, getattr(entry, name)) for name in _FIELDS)
    doc.update(detail=entry.detail, prev=record.prev, hash=record.hash)
    return doc


def doc_to_record(doc: dict[str, Any]) -> AuditRecord:
    """The record of an exported line; ValueError when a member is missing or mistyped."""
    try:
        texts = {name: doc[name] for name in (*_FIELDS, "prev", "hash")}
        seq, detail = doc["seq"], doc["detail"]
    except KeyError as exc:
        raise ValueError(f"Audit record lacks the member {exc.args[0]}") from None
    if not isinstance(seq, int) or isinstance(seq, bool):
        raise ValueError(f"Audit record seq {seq!r} is not an integer")
    if not isinstance(detail, dict) or not all(isinstance(v, str) for v in texts.values()):
        raise ValueError(f"Audit record {seq} has a member of the wrong type")
    entry = AuditEntry(**{name: texts[name] for name in _FIELDS}, detail=detail)
    return AuditRecord(seq, entry, texts["prev"], texts["hash"])
