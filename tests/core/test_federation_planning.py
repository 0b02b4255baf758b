"""Distributed-operation planning (cityos.core.federation): which registrations a write or
a read reaches, how a write's Attributes are split, and how fragments merge."""

from __future__ import annotations

from typing import Any

from cityos.core.federation import (
    Target,
    exclusive_attrs,
    merge_entities,
    read_targets,
    split_write,
    supported_operations,
    write_targets,
)
from cityos.core.registrations import Registration

V = "https://example.org/vocab#"
CAR = V + "Vehicle"
SPEED = V + "speed"
NAME = V + "name"
CAR_ID = "urn:ngsi-ld:Vehicle:1"


def _reg(
    reg_id: str, mode: str = "inclusive", ops: list[str] | None = None, **info: Any
) -> Registration:
    entity = {"type": CAR, **({"id": info.pop("id")} if "id" in info else {})}
    information = [{"entities": [entity], **info}]
    members: dict[str, Any] = {
        "information": information,
        "endpoint": f"http://{reg_id}",
        "mode": mode,
    }
    if ops is not None:
        members["operations"] = ops
    return Registration(f"urn:ngsi-ld:ContextSourceRegistration:{reg_id}", members, "", "")


def test_operation_groups_unfold_and_default_to_federation_ops() -> None:
    assert {"queryEntity", "retrieveEntity", "queryBatch"} <= supported_operations(_reg("a"))
    assert "createEntity" not in supported_operations(_reg("a"))
    assert "createEntity" in supported_operations(_reg("a", ops=["redirectionOps"]))
    assert supported_operations(_reg("a", ops=["updateAttrs"])) == {"updateAttrs"}


def test_writes_reach_registrations_supporting_the_operation_exclusive_first() -> None:
    regs = [
        _reg("inc", ops=["redirectionOps"]),
        _reg("exc", "exclusive", ["redirectionOps"], id=CAR_ID, propertyNames=[SPEED]),
        _reg("aux", "auxiliary", ["redirectionOps"]),
        _reg("ro"),
        _reg("other", "exclusive", ["redirectionOps"], id="urn:ngsi-ld:Vehicle:2"),
    ]
    targets = write_targets(regs, "updateAttrs", CAR_ID, [CAR], 0)
    assert [t.reg.id.rsplit(":", 1)[-1] for t in targets] == ["exc", "inc"]
    assert write_targets(regs, "updateAttrs", CAR_ID, [V + "Bus"], 0) == []


def test_exclusive_takes_its_attributes_redirects_share_inclusive_copies() -> None:
    exc = Target(_reg("exc", "exclusive"), frozenset({SPEED}))
    red1 = Target(_reg("red1", "redirect"), None)
    red2 = Target(_reg("red2", "redirect"), frozenset({NAME}))
    inc = Target(_reg("inc"), None)
    plan, kept = split_write([SPEED, NAME], [exc, inc])
    assert plan == [(exc, frozenset({SPEED})), (inc, frozenset({NAME}))]
    assert kept == {NAME}
    plan, kept = split_write([SPEED, NAME], [exc, red1, red2, inc])
    assert plan == [(exc, {SPEED}), (red1, {NAME}), (red2, {NAME})]
    assert kept == frozenset()


def test_a_whole_entity_operation_reaches_every_target() -> None:
    exc = Target(_reg("exc", "exclusive"), frozenset({SPEED}))
    inc = Target(_reg("inc"), None)
    plan, kept = split_write([], [exc, inc])
    assert [t for t, _ in plan] == [exc, inc]
    assert kept == frozenset()


def test_reads_skip_sources_without_the_asked_attributes() -> None:
    regs = [_reg("speedy", propertyNames=[SPEED]), _reg("all")]
    found = read_targets(regs, ["queryEntity"], None, None, [NAME], 0)
    assert [t.reg.id.rsplit(":", 1)[-1] for t in found] == ["all"]
    assert len(read_targets(regs, ["queryEntity"], None, None, None, 0)) == 2


def _entity(**attrs: Any) -> dict[str, Any]:
    return {"id": CAR_ID, "type": [CAR], "attrs": attrs}


def _prop(value: Any, observed: str | None = None, dataset: str | None = None) -> dict[str, Any]:
    inst: dict[str, Any] = {"type": "Property", "value": value}
    if observed:
        inst["observedAt"] = observed
    if dataset:
        inst["datasetId"] = dataset
    return inst


def test_fragments_merge_by_dataset_the_newest_observation_wins() -> None:
    inc = Target(_reg("inc"), None)
    local = _entity(**{SPEED: [_prop(10, "2026-01-01T00:00:00Z")]})
    remote = _entity(
        **{
            SPEED: [_prop(20, "2026-01-02T00:00:00Z"), _prop(5, dataset="urn:ds:b")],
            NAME: [_prop("x")],
        }
    )
    merged = merge_entities(local, [(inc, remote)])
    assert merged is not None
    assert [i["value"] for i in merged["attrs"][SPEED]] == [20, 5]
    assert merged["attrs"][NAME] == [_prop("x")]
    assert local["attrs"][SPEED][0]["value"] == 10  # the local Entity is not changed


def test_auxiliary_only_fills_gaps_and_exclusive_hides_the_local_copy() -> None:
    aux = Target(_reg("aux", "auxiliary"), None)
    exc_reg = _reg("exc", "exclusive", id=CAR_ID, propertyNames=[SPEED])
    exc = Target(exc_reg, frozenset({SPEED}))
    local = _entity(**{SPEED: [_prop(1)], NAME: [_prop("local")]})
    merged = merge_entities(local, [(aux, _entity(**{NAME: [_prop("aux")], V + "x": [_prop(2)]}))])
    assert merged is not None
    assert merged["attrs"][NAME] == [_prop("local")]
    assert merged["attrs"][V + "x"] == [_prop(2)]
    hidden = exclusive_attrs([exc], CAR_ID)
    assert hidden == {SPEED}
    merged = merge_entities(local, [], hidden)
    assert merged is not None and SPEED not in merged["attrs"]
    assert merge_entities(None, []) is None
