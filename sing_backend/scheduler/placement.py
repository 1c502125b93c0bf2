"""Placement decisions: which held offer each pending task goes to, or why it cannot go anywhere.

Pure functions over plain data; the offer loop in `core` does the I/O.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from ..models.common import AgentPlacement

_SEPARATING = {AgentPlacement.SEPARATE, AgentPlacement.SEPARATE_BY_DEPLOY, AgentPlacement.SEPARATE_BY_REQUEST,
               AgentPlacement.SPREAD_ALL_AGENTS}


@dataclass(frozen=True, slots=True)
class Need:
    """What one pending task asks for."""

    key: str
    request_id: str
    deploy_id: str
    cpus: float
    mem_mb: float
    disk_mb: float
    num_ports: int
    placement: AgentPlacement = AgentPlacement.GREEDY
    rack_sensitive: bool = False
    instances: int = 1
    required_attributes: tuple[tuple[str, str], ...] = ()


@dataclass(slots=True)
class OfferView:
    """A held offer's free resources; placement consumes from a copy."""

    offer_id: str
    agent_id: str
    host: str
    rack_id: str
    cpus: float
    mem_mb: float
    disk_mb: float
    ports: list[tuple[int, int]]
    attributes: dict[str, str] = field(default_factory=dict)

    def free_ports(self) -> int:
        return sum(end - begin + 1 for begin, end in self.ports)

    def take_ports(self, count: int) -> list[int]:
        taken: list[int] = []
        while len(taken) < count:
            begin, end = self.ports[0]
            take = min(count - len(taken), end - begin + 1)
            taken.extend(range(begin, begin + take))
            if begin + take > end:
                self.ports.pop(0)
            else:
                self.ports[0] = (begin + take, end)
        return taken


@dataclass(frozen=True, slots=True)
class Occupant:
    """A live task, as far as placement rules care."""

    request_id: str
    deploy_id: str
    agent_id: str
    rack_id: str


@dataclass(frozen=True, slots=True)
class Assignment:
    need_key: str
    offer_id: str
    agent_id: str
    host: str
    rack_id: str
    ports: tuple[int, ...]


@dataclass(slots=True)
class PlacementResult:
    assignments: list[Assignment] = field(default_factory=list)
    # pending task key -> human-readable reason it stays pending
    unplaced: dict[str, str] = field(default_factory=dict)


def _fmt(value: float) -> str:
    return f"{value:g}"


def place(
    needs: list[Need],
    offers: list[OfferView],
    occupants: list[Occupant],
    unusable_agents: dict[str, str] | None = None,
    known_racks: frozenset[str] = frozenset(),
) -> PlacementResult:
    """Greedy first-fit over offers, most free memory first, honouring placement rules.

    `unusable_agents` maps agent id -> why it takes no new tasks (frozen, decommissioning).
    """
    unusable_agents = unusable_agents or {}
    result = PlacementResult()
    per_agent_request: Counter[tuple[str, str]] = Counter()
    per_agent_deploy: Counter[tuple[str, str, str]] = Counter()
    per_rack_request: Counter[tuple[str, str]] = Counter()
    for occ in occupants:
        per_agent_request[(occ.agent_id, occ.request_id)] += 1
        per_agent_deploy[(occ.agent_id, occ.request_id, occ.deploy_id)] += 1
        per_rack_request[(occ.rack_id, occ.request_id)] += 1
    racks = set(known_racks) | {o.rack_id for o in offers}

    if not offers:
        reason = ("no offers: every agent is fully used, unusable, or the cluster is not connected"
                  if not unusable_agents else
                  "no offers from usable agents (" + ", ".join(f"{a}: {r}" for a, r in unusable_agents.items()) + ")")
        for need in needs:
            result.unplaced[need.key] = reason
        return result

    for need in needs:
        rejections: list[str] = []
        best_mem = max((o.mem_mb for o in offers), default=0.0)
        best_cpus = max((o.cpus for o in offers), default=0.0)
        chosen: OfferView | None = None
        # Spread: prefer agents running fewer tasks of this request, then more free memory.
        candidates = sorted(offers, key=lambda o: (per_agent_request[(o.agent_id, need.request_id)], -o.mem_mb))
        for offer in candidates:
            why = _rejection(need, offer, unusable_agents, per_agent_request, per_agent_deploy, per_rack_request,
                             len(racks))
            if why is None:
                chosen = offer
                break
            rejections.append(why)
        if chosen is None:
            result.unplaced[need.key] = _summarise(need, rejections, best_cpus, best_mem)
            continue
        chosen.cpus -= need.cpus
        chosen.mem_mb -= need.mem_mb
        chosen.disk_mb -= need.disk_mb
        ports = chosen.take_ports(need.num_ports) if need.num_ports else []
        per_agent_request[(chosen.agent_id, need.request_id)] += 1
        per_agent_deploy[(chosen.agent_id, need.request_id, need.deploy_id)] += 1
        per_rack_request[(chosen.rack_id, need.request_id)] += 1
        result.assignments.append(
            Assignment(need.key, chosen.offer_id, chosen.agent_id, chosen.host, chosen.rack_id, tuple(ports))
        )
    return result


def _rejection(
    need: Need,
    offer: OfferView,
    unusable: dict[str, str],
    per_agent_request: Counter[tuple[str, str]],
    per_agent_deploy: Counter[tuple[str, str, str]],
    per_rack_request: Counter[tuple[str, str]],
    rack_count: int,
) -> str | None:
    if offer.agent_id in unusable:
        return f"agent {offer.agent_id} is {unusable[offer.agent_id]}"
    for name, value in need.required_attributes:
        if offer.attributes.get(name) != value:
            return f"required attribute {name}={value}"
    if offer.cpus + 1e-9 < need.cpus:
        return "cpus"
    if offer.mem_mb + 1e-9 < need.mem_mb:
        return "memory"
    if offer.disk_mb + 1e-9 < need.disk_mb:
        return "disk"
    if offer.free_ports() < need.num_ports:
        return "ports"
    placement = AgentPlacement(need.placement)
    if placement in (AgentPlacement.SEPARATE_BY_REQUEST, AgentPlacement.SPREAD_ALL_AGENTS):
        if per_agent_request[(offer.agent_id, need.request_id)]:
            return f"placement {placement.value}: agent already runs a task of this request"
    elif placement in (AgentPlacement.SEPARATE, AgentPlacement.SEPARATE_BY_DEPLOY):
        if per_agent_deploy[(offer.agent_id, need.request_id, need.deploy_id)]:
            return f"placement {placement.value}: agent already runs a task of this deploy"
    if need.rack_sensitive and rack_count > 1:
        # At most ceil(instances / racks) tasks of a request on one rack.
        cap = -(-need.instances // rack_count)
        if per_rack_request[(offer.rack_id, need.request_id)] >= cap:
            return f"rack balance: rack {offer.rack_id} already has {cap} of {need.instances} instances"
    return None


def _summarise(need: Need, rejections: list[str], best_cpus: float, best_mem: float) -> str:
    counts = Counter(rejections)
    if counts["memory"] == len(rejections):
        return (f"no agent with enough memory: needs {_fmt(need.mem_mb)} MB, "
                f"the largest free offer has {_fmt(best_mem)} MB")
    if counts["cpus"] == len(rejections):
        return f"no agent with enough cpus: needs {_fmt(need.cpus)}, the largest free offer has {_fmt(best_cpus)}"
    parts = []
    for why, n in counts.most_common():
        label = {"cpus": f"not enough cpus (needs {_fmt(need.cpus)})",
                 "memory": f"not enough memory (needs {_fmt(need.mem_mb)} MB)",
                 "disk": f"not enough disk (needs {_fmt(need.disk_mb)} MB)",
                 "ports": f"not enough free ports (needs {need.num_ports})"}.get(why, why)
        parts.append(f"{label} on {n} agent{'s' if n != 1 else ''}")
    return "no offer fits: " + "; ".join(parts)
