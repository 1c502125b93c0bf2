"""What an embedded agent looks like: its identity, capacity and attributes."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

# Ports below the Linux ephemeral range start (32768) are the safest; beyond that we still hand out
# disjoint ranges because every agent shares the machine's port space (tasks often bind 0.0.0.0).
DEFAULT_BASE_PORT = 31000
_LAST_USABLE_PORT = 65000


@dataclass(frozen=True)
class AgentSpec:
    """One agent of the embedded cluster.

    Each agent listens on its own loopback address (127.0.0.N) so hosts are distinct and reachable.
    ``rack_id`` becomes the TEXT attribute ``rackid``; ``attributes`` are extra TEXT attributes.
    ``ports`` is an inclusive range.
    """

    agent_id: str
    hostname: str
    rack_id: str
    cpus: float = 4.0
    mem_mb: float = 4096.0
    disk_mb: float = 20480.0
    ports: tuple[int, int] = (31000, 31999)
    attributes: dict[str, str] = field(default_factory=dict)

    def all_attributes(self) -> dict[str, str]:
        return {"rackid": self.rack_id, **self.attributes}


def loopback_host(index: int) -> str:
    """The loopback address of the index-th agent (1-based): 127.0.0.2, 127.0.0.3, ...

    Addresses ending in .0 or .255 are skipped so every host looks like an ordinary one.
    """
    if index < 1:
        raise ValueError("agent index starts at 1")
    base = int(ipaddress.IPv4Address("127.0.0.1"))
    n = 0
    addr = base
    while n < index:
        addr += 1
        if addr & 0xFF not in (0, 255):
            n += 1
    return str(ipaddress.IPv4Address(addr))


def default_agents(count: int = 3, racks: int = 2, *, base_port: int = DEFAULT_BASE_PORT) -> list[AgentSpec]:
    """agent-1..N on 127.0.0.2.., racks "rack-1".."rack-R" round robin, disjoint port ranges.

    Ranges hold 1000 ports each while they fit below port 65000, fewer when there are many agents.
    """
    if count < 0 or racks < 1:
        raise ValueError("count must be >= 0 and racks >= 1")
    per_agent = min(1000, (_LAST_USABLE_PORT - base_port) // max(count, 1))
    if per_agent < 1:
        raise ValueError(f"not enough ports for {count} agents above {base_port}")
    specs = []
    for i in range(1, count + 1):
        first = base_port + (i - 1) * per_agent
        specs.append(
            AgentSpec(
                agent_id=f"agent-{i}",
                hostname=loopback_host(i),
                rack_id=f"rack-{(i - 1) % racks + 1}",
                ports=(first, first + per_agent - 1),
            )
        )
    return specs
