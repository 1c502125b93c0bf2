"""Pure pieces: resource arithmetic, default agent specs, launch planning, UTF-8 trimming."""

from __future__ import annotations

import ipaddress

import pytest

from sing_backend.cluster import AgentSpec, default_agents
from sing_backend.cluster.files_http import _trim_partial_utf8
from sing_backend.cluster.launch_plan import plan_launches
from sing_backend.cluster.resources import Resources


def test_resources_round_trip_and_arithmetic() -> None:
    total = Resources(cpus=4, mem=4096, disk=100, ports=((31000, 31999),))
    used = Resources.from_mesos(
        [
            {"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.1}},
            {"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.2}},
            {"name": "ports", "type": "RANGES", "ranges": {"range": [{"begin": 31000, "end": 31000}]}},
            {"name": "ports", "type": "RANGES", "ranges": {"range": [{"begin": 31500, "end": 31501}]}},
        ]
    )
    assert used.cpus == 0.3
    left = total - used
    assert left.cpus == 3.7 and left.ports == ((31001, 31499), (31502, 31999))
    assert left + used == total
    assert Resources.from_mesos(left.to_mesos()) == left
    assert used.shortfall(total) is None
    assert "ports" in (used.shortfall(left) or "")
    assert "cpus" in (Resources(cpus=5).shortfall(total) or "")
    assert not Resources(disk=10).is_offerable() and Resources(cpus=0.01).is_offerable()


@pytest.mark.parametrize(
    "bad",
    [
        "x",
        [{"name": "gpus", "type": "SCALAR", "scalar": {"value": 1}}],
        [{"name": "cpus", "type": "SCALAR", "scalar": {"value": -1}}],
        [{"name": "ports", "type": "RANGES", "ranges": {"range": [{"begin": 5, "end": 4}]}}],
        [
            {"name": "ports", "type": "RANGES", "ranges": {"range": [{"begin": 5, "end": 9}]}},
            {"name": "ports", "type": "RANGES", "ranges": {"range": [{"begin": 9, "end": 9}]}},
        ],
    ],
)
def test_malformed_resources_are_refused(bad: object) -> None:
    with pytest.raises(ValueError):
        Resources.from_mesos(bad)


def test_default_agents_are_distinct_hosts_with_disjoint_ports() -> None:
    three = default_agents()
    assert [(a.agent_id, a.hostname, a.rack_id, a.ports) for a in three] == [
        ("agent-1", "127.0.0.2", "rack-1", (31000, 31999)),
        ("agent-2", "127.0.0.3", "rack-2", (32000, 32999)),
        ("agent-3", "127.0.0.4", "rack-1", (33000, 33999)),
    ]
    many = default_agents(500, racks=5)
    hosts = [ipaddress.IPv4Address(a.hostname) for a in many]
    assert len(set(hosts)) == 500 and all(h.is_loopback and h.packed[3] not in (0, 255) for h in hosts)
    ranges = sorted(a.ports for a in many)
    assert all(a[1] < b[0] for a, b in zip(ranges, ranges[1:], strict=False)) and ranges[-1][1] <= 65000
    assert {a.rack_id for a in many} == {f"rack-{i}" for i in range(1, 6)}
    assert AgentSpec("a", "h", "r", attributes={"zone": "z"}).all_attributes() == {"rackid": "r", "zone": "z"}


def test_plan_launches_carves_the_pool_in_order() -> None:
    def info(task_id: str, cpus: float) -> dict:
        return {
            "task_id": {"value": task_id},
            "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": cpus}}],
            "command": {"value": "true"},
        }

    pool = Resources(cpus=2, mem=100)
    plan = plan_launches(
        [info("a", 1.5), info("b", 1), info("c", 0.5), info("a", 0), {"nonsense": 1}],
        framework_id="f", agent_id="x", pool=pool, active_ids=set(), stale_offer=False,
    )
    assert [r.task_id for r in plan.launches] == ["a", "c"]
    assert [(r.task_id, r.state) for r in plan.rejections] == [
        ("b", "TASK_ERROR"), ("a", "TASK_ERROR"), (None, "TASK_ERROR")]
    assert plan.leftover == Resources(cpus=0, mem=100)
    stale = plan_launches([info("d", 3)], framework_id="f", agent_id="x", pool=pool, active_ids=(),
                          stale_offer=True)
    assert stale.rejections[0].state == "TASK_DROPPED"


def test_trim_partial_utf8() -> None:
    euro = "€".encode()  # 3 bytes
    assert _trim_partial_utf8(b"ab" + euro[:2]) == b"ab"
    assert _trim_partial_utf8(b"ab" + euro) == b"ab" + euro
    assert _trim_partial_utf8(euro[:1]) == euro[:1]  # nothing else to return: leave it
    assert _trim_partial_utf8(b"") == b""
