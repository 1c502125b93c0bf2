from __future__ import annotations

from sing_backend.models.common import AgentPlacement
from sing_backend.scheduler.placement import Need, Occupant, OfferView, place


def offer(agent: str, rack: str = "r1", cpus: float = 4, mem: float = 1024, ports=((31000, 31009),)) -> OfferView:
    return OfferView(f"o-{agent}", agent, f"host-{agent}", rack, cpus, mem, 1000, list(ports), {"rackid": rack})


def need(key: str, request: str = "web", mem: float = 64, cpus: float = 0.5, ports: int = 0, **kw) -> Need:
    return Need(key, request, "v1", cpus, mem, 0, ports, **kw)


def test_places_each_need_and_assigns_distinct_ports():
    result = place([need("a", ports=2), need("b", ports=2)], [offer("1")], [])
    assert not result.unplaced
    ports = [p for a in result.assignments for p in a.ports]
    assert len(ports) == 4 and len(set(ports)) == 4
    assert all(31000 <= p <= 31009 for p in ports)


def test_consumes_resources_so_second_need_does_not_fit():
    result = place([need("a", mem=800), need("b", mem=800)], [offer("1", mem=1024)], [])
    assert [a.need_key for a in result.assignments] == ["a"]
    assert "no agent with enough memory" in result.unplaced["b"]
    assert "800" in result.unplaced["b"] and "224" in result.unplaced["b"]


def test_reason_names_memory_when_no_agent_is_big_enough():
    result = place([need("a", mem=8192)], [offer("1"), offer("2", mem=2048)], [])
    assert result.unplaced["a"] == ("no agent with enough memory: needs 8192 MB, the largest free offer has 2048 MB")


def test_no_offers_gives_a_reason():
    result = place([need("a")], [], [])
    assert "no offers" in result.unplaced["a"]


def test_spreads_instances_over_agents():
    result = place([need(str(i)) for i in range(3)], [offer("1"), offer("2"), offer("3")], [])
    assert sorted(a.agent_id for a in result.assignments) == ["1", "2", "3"]


def test_separate_by_request_refuses_a_second_task_on_an_agent():
    occupants = [Occupant("web", "v1", "1", "r1")]
    result = place([need("a", placement=AgentPlacement.SEPARATE_BY_REQUEST)], [offer("1")], occupants)
    assert "SEPARATE_BY_REQUEST" in result.unplaced["a"]
    result = place([need("a", placement=AgentPlacement.SEPARATE_BY_REQUEST)], [offer("1"), offer("2")], occupants)
    assert result.assignments[0].agent_id == "2"


def test_rack_sensitive_balances_racks():
    offers = [offer("1", "r1"), offer("2", "r1"), offer("3", "r2")]
    result = place([need(str(i), rack_sensitive=True, instances=2) for i in range(2)], offers, [])
    assert sorted(a.rack_id for a in result.assignments) == ["r1", "r2"]


def test_required_attributes_restrict_agents():
    offers = [offer("1", "r1"), offer("2", "r2")]
    result = place([need("a", required_attributes=(("rackid", "r2"),))], offers, [])
    assert result.assignments[0].agent_id == "2"


def test_unusable_agent_is_skipped_with_reason():
    result = place([need("a")], [offer("1")], [], unusable_agents={"1": "frozen"})
    assert "agent 1 is frozen" in result.unplaced["a"]
