"""The embedded local cluster: a Mesos v1 HTTP master and agents in-process (see cluster.py)."""

from __future__ import annotations

from .cluster import EmbeddedCluster
from .spec import AgentSpec, default_agents

__all__ = ["AgentSpec", "EmbeddedCluster", "default_agents"]
