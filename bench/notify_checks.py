"""What the receiver got, compared with what the updates should have caused.

Each acknowledged update must reach every matching Subscription exactly once: the key
of a notified change is ``(subscriptionId, sequence number)``. Delivery is at least once
(GS CIM 009 clause 5.8 allows a retry after a lost acknowledgement), so a duplicate is
not wrong, but none should happen on a healthy loopback receiver. A duplicate carrying
the same Notification id is a redelivery of one outbox row; with a different id, the
server produced the notification twice.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field

from bench.notify_receiver import Inbox, Record

__all__ = ["Delivered", "compare", "latencies", "rate_in_window"]

_MAX_SAMPLES = 5


@dataclass
class Delivered:
    expected: int = 0
    received: int = 0
    missing: int = 0
    duplicates: int = 0
    wrong: int = 0
    """Malformed, for an update that failed or was never sent, or naming the wrong Entity."""
    samples: list[str] = field(default_factory=list)

    def sample(self, message: str) -> None:
        if len(self.samples) < _MAX_SAMPLES:
            self.samples.append(message)


def compare(
    inbox: Inbox,
    subscriptions: Collection[str],
    acked: Collection[int],
    entity_of: Callable[[int], str],
) -> Delivered:
    """Only records of ``subscriptions`` count; other Subscriptions are not this check's."""
    records = [record for record in inbox.records if record[1] in subscriptions]
    seen = Counter((record[1], record[3]) for record in records)
    result = Delivered(len(subscriptions) * len(acked), len(records))
    result.wrong = inbox.malformed
    for sample in inbox.samples:
        result.sample(f"malformed notification: {sample}")
    _count_missing(result, seen, subscriptions, acked)
    _count_wrong(result, records, acked, entity_of)
    _count_duplicates(result, records, seen)
    return result


def _count_missing(
    result: Delivered,
    seen: Counter[tuple[str, int]],
    subscriptions: Collection[str],
    acked: Collection[int],
) -> None:
    for subscription in subscriptions:
        lost = [seq for seq in acked if (subscription, seq) not in seen]
        result.missing += len(lost)
        if lost:
            result.sample(f"{subscription}: {len(lost)} updates not notified, e.g. seq {lost[:5]}")


def _count_wrong(
    result: Delivered,
    records: list[Record],
    acked: Collection[int],
    entity_of: Callable[[int], str],
) -> None:
    for _, subscription, entity_id, seq, notification_id in records:
        if seq not in acked:
            result.wrong += 1
            result.sample(f"{notification_id} ({subscription}) notifies seq {seq}, never acked")
        elif entity_id != entity_of(seq):
            result.wrong += 1
            result.sample(f"{notification_id}: seq {seq} on {entity_id}, sent to {entity_of(seq)}")


def _count_duplicates(
    result: Delivered, records: list[Record], seen: Counter[tuple[str, int]]
) -> None:
    result.duplicates = sum(count - 1 for count in seen.values() if count > 1)
    if not result.duplicates:
        return
    ids: dict[tuple[str, int], list[str]] = {}
    for _, subscription, _, seq, notification_id in records:
        if seen[(subscription, seq)] > 1:
            ids.setdefault((subscription, seq), []).append(notification_id)
    for (subscription, seq), notification_ids in list(ids.items())[:_MAX_SAMPLES]:
        how = "redelivered" if len(set(notification_ids)) == 1 else "produced twice"
        result.sample(f"{subscription} seq {seq} {how}: {notification_ids}")


def rate_in_window(records: list[Record], start: float, end: float) -> float:
    """Notified Entities per second that arrived in ``[start, end)``."""
    arrived = sum(1 for record in records if start <= record[0] < end)
    return arrived / (end - start) if end > start else float("nan")


def latencies(records: list[Record], acked: Mapping[int, float], start: float) -> list[float]:
    """Sorted seconds from each update's 204 to its first notification, for updates
    acknowledged from ``start`` on."""
    first: dict[int, float] = {}
    for arrival, _, _, seq, _ in records:
        if seq not in first or arrival < first[seq]:
            first[seq] = arrival
    return sorted(
        first[seq] - answered
        for seq, answered in acked.items()
        if answered >= start and seq in first
    )
