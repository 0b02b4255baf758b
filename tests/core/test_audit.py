"""The hash chain of the audit log (cityos/core/audit.py): building it, verifying it, and
each kind of tampering it reveals, or, for a truncated end, reveals only with the head
hash an auditor kept."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import orjson
import pytest

from cityos.core.audit import (
    GENESIS,
    Verifier,
    canonical,
    chain,
    chain_hash,
    doc_to_record,
    entry_to_doc,
    verify,
)
from cityos.storage.base import AuditEntry, AuditRecord


def entry(n: int, **fields: object) -> AuditEntry:
    base: dict[str, object] = {
        "at": f"2026-01-01T00:00:{n:02d}.000000Z",
        "action": "personal.read",
        "actor": f"apikey:k{n % 3}",
        "tenant": "takamatsu",
        "target": f"urn:ngsi-ld:ChildTag:{n}",
        "person": f"urn:ngsi-ld:Person:child{n % 2}",
        "detail": {"attrs": ["location"], "n": n},
    }
    base.update(fields)
    return AuditEntry(**base)  # type: ignore[arg-type]


def log(n: int = 6) -> list[AuditRecord]:
    return chain(entry(i) for i in range(1, n + 1))


def edited(record: AuditRecord, **fields: object) -> AuditRecord:
    return dataclasses.replace(record, entry=dataclasses.replace(record.entry, **fields))  # type: ignore[arg-type]


def test_canonical_is_sorted_compact_utf8_and_covers_every_field() -> None:
    e = entry(1, person="urn:ngsi-ld:Person:高松", detail={"b": 1, "a": {"z": 0, "y": 1}})
    text = canonical(e, 7)
    assert text == (
        b'{"action":"personal.read","actor":"apikey:k1","at":"2026-01-01T00:00:01.000000Z",'
        b'"detail":{"a":{"y":1,"z":0},"b":1},"person":"urn:ngsi-ld:Person:\xe9\xab\x98\xe6\x9d\xbe",'
        b'"seq":7,"target":"urn:ngsi-ld:ChildTag:1","tenant":"takamatsu"}'
    )
    # The same entry with its detail's members in another order hashes the same.
    same = dataclasses.replace(e, detail={"a": {"y": 1, "z": 0}, "b": 1})
    assert chain_hash(GENESIS, 7, same) == chain_hash(GENESIS, 7, e)


@pytest.mark.parametrize(
    "change",
    [
        {"at": "2026-01-01T00:00:02.000000Z"},
        {"action": "personal.write"},
        {"actor": "apikey:other"},
        {"tenant": "kagawa"},
        {"target": "urn:ngsi-ld:ChildTag:x"},
        {"person": ""},
        {"detail": {}},
    ],
)
def test_every_field_changes_the_hash(change: dict[str, object]) -> None:
    e = entry(1)
    assert chain_hash(GENESIS, 1, dataclasses.replace(e, **change)) != chain_hash(GENESIS, 1, e)  # type: ignore[arg-type]


def test_seq_and_prev_change_the_hash() -> None:
    e = entry(1)
    assert chain_hash(GENESIS, 1, e) != chain_hash(GENESIS, 2, e)
    assert chain_hash(GENESIS, 1, e) != chain_hash("1" * 64, 1, e)


def test_chain_links_each_record_to_the_one_before() -> None:
    records = log(4)
    assert [r.seq for r in records] == [1, 2, 3, 4]
    assert records[0].prev == GENESIS
    for before, after in zip(records, records[1:], strict=False):
        assert after.prev == before.hash
    assert all(len(r.hash) == 64 for r in records)
    # Appending later, from the head, gives the same chain as appending at once.
    tail = chain([entry(3), entry(4)], records[1].seq, records[1].hash)
    assert tail == records[2:]


def test_an_intact_log_verifies() -> None:
    records = log()
    report = verify(records)
    assert report.ok and report.problems == []
    assert report.checked == 6
    assert (report.head_seq, report.head) == (6, records[-1].hash)


def test_an_empty_log_verifies_with_the_genesis_head() -> None:
    report = verify([])
    assert report.ok and report.checked == 0 and report.head == GENESIS


def test_verify_streams_a_generator() -> None:
    def records() -> Iterator[AuditRecord]:
        yield from log(100)

    assert verify(records()).checked == 100


def test_verifier_fed_page_by_page_equals_verify() -> None:
    records = log(10)
    verifier = Verifier()
    for page in (records[:4], records[4:8], records[8:]):
        for record in page:
            verifier.feed(record)
    assert verifier.report() == verify(records)


def test_an_edited_field_is_named_by_its_seq() -> None:
    records = log()
    records[2] = edited(records[2], detail={"attrs": ["location", "heartRate"], "n": 3})
    report = verify(records)
    assert not report.ok
    assert report.problems == ["seq 3: record was edited (its hash does not match)"]


def test_an_edit_with_its_hash_recomputed_breaks_the_next_link() -> None:
    records = log()
    forged = edited(records[2], actor="apikey:innocent")
    records[2] = dataclasses.replace(forged, hash=chain_hash(forged.prev, 3, forged.entry))
    report = verify(records)
    assert report.problems == ["seq 4: broken link (prev is not the hash of seq 3)"]


def test_a_deleted_middle_record_is_a_gap() -> None:
    records = log()
    del records[2]
    assert verify(records).problems == ["seq 4: seq 3 missing before it"]


def test_deleted_records_at_the_start_are_a_gap() -> None:
    records = log()
    assert verify(records[2:]).problems == ["seq 3: seqs 1-2 missing before it"]


def test_a_deleted_record_renumbered_away_is_still_caught() -> None:
    records = log()
    del records[2]
    # The forger closes the gap by renumbering the later records: their hashes no longer
    # match, since seq is part of what each hash covers.
    records[2:] = [dataclasses.replace(r, seq=r.seq - 1) for r in records[2:]]
    problems = verify(records).problems
    assert problems[0] == "seq 3: record was edited (its hash does not match)"
    assert "seq 3: broken link (prev is not the hash of seq 2)" in problems


def test_a_broken_first_link() -> None:
    records = log()
    records[0] = dataclasses.replace(records[0], prev="f" * 64)
    problems = verify(records).problems
    assert "seq 1: broken link (prev is not the hash of the genesis)" in problems


def test_reordered_records_are_reported() -> None:
    records = log()
    records[2], records[3] = records[3], records[2]
    assert verify(records).problems == [
        "seq 4: seq 3 missing before it",
        "seq 3: out of order (comes after seq 4)",
    ]


def test_a_duplicated_record_is_out_of_order() -> None:
    records = log()
    records.insert(3, records[2])
    assert verify(records).problems == ["seq 3: out of order (comes after seq 3)"]


def test_swapped_contents_keep_seq_order_but_fail_the_hashes() -> None:
    """Swapping two rows' entries in the database (seq stays in order)."""
    records = log()
    a, b = records[2], records[3]
    records[2] = dataclasses.replace(a, entry=b.entry)
    records[3] = dataclasses.replace(b, entry=a.entry)
    problems = verify(records).problems
    assert "seq 3: record was edited (its hash does not match)" in problems
    assert "seq 4: record was edited (its hash does not match)" in problems


def test_a_truncated_end_is_a_valid_chain_on_its_own() -> None:
    """What a chain cannot show: the log without its last records is a valid, shorter
    chain. That is why the auditor keeps the head hash ``verify`` prints."""
    records = log()
    assert verify(records[:-2]).ok


def test_the_kept_head_reveals_truncation() -> None:
    records = log()
    head = verify(records[:5]).head  # what the auditor kept yesterday
    assert verify(records, expect_head=head).ok  # the log grew since: fine
    assert verify(records[:5], expect_head=head).ok
    report = verify(records[:3], expect_head=head)  # seqs 4 and 5 were removed
    assert not report.ok
    assert report.problems == [
        f"seq 4: expected head {head} is not in the log "
        "(records were removed from its end, or it was rewritten)"
    ]


def test_the_kept_head_reveals_a_rewritten_log() -> None:
    records = log()
    head = verify(records).head
    rewritten = chain(r.entry for r in records[:5])
    rewritten += chain([entry(99)], 5, rewritten[-1].hash)
    assert verify(rewritten).ok
    assert not verify(rewritten, expect_head=head).ok


def test_export_round_trip() -> None:
    records = log(3)
    lines = [orjson.dumps(entry_to_doc(r)) for r in records]
    back = [doc_to_record(orjson.loads(line)) for line in lines]
    assert back == records
    assert verify(back).ok
    assert set(entry_to_doc(records[0])) == {
        "seq", "at", "action", "actor", "tenant", "target", "person", "detail", "prev", "hash",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"seq": None}, "lacks the member seq"),
        ({"hash": None}, "lacks the member hash"),
        ({"seq": "1"}, "is not an integer"),
        ({"seq": True}, "is not an integer"),
        ({"detail": []}, "wrong type"),
        ({"actor": 5}, "wrong type"),
    ],
)
def test_doc_to_record_refuses_malformed_lines(change: dict[str, object], message: str) -> None:
    doc = entry_to_doc(log(1)[0])
    for name, value in change.items():
        if value is None:
            del doc[name]
        else:
            doc[name] = value
    with pytest.raises(ValueError, match=message):
        doc_to_record(doc)
