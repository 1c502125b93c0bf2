"""Which resources of each agent are free, which sit in an outstanding offer, and to whom.

All free resources of an agent go into one offer, so an agent has at most one outstanding offer.
When more resources free up while it is outstanding, the offer is rescinded and replaced by a merged
one; when an ACCEPT uses part of an offer, the rest becomes a new offer. In both cases the old id is
remembered as an alias of the new one, so an ACCEPT racing the replacement still lands (it is checked
against what is really free, so nothing is ever over-committed).
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from dataclasses import dataclass

from .resources import Resources

_ALIASES_KEPT = 10_000
_ALIAS_HOPS = 16


@dataclass(frozen=True)
class Offer:
    offer_id: str
    framework_id: str
    agent_id: str
    resources: Resources


class OfferBook:
    def __init__(self, id_prefix: str) -> None:
        self._prefix = id_prefix
        self._ids = itertools.count(1)
        self.free: dict[str, Resources] = {}
        self._offers: dict[str, Offer] = {}
        self._by_agent: dict[str, str] = {}
        self._aliases: OrderedDict[str, str] = OrderedDict()

    # -- agents --------------------------------------------------------------------------------

    def add_agent(self, agent_id: str, total: Resources) -> None:
        self.free[agent_id] = total

    def remove_agent(self, agent_id: str) -> Offer | None:
        """Forget the agent; returns its outstanding offer (now void) if any."""
        self.free.pop(agent_id, None)
        offer_id = self._by_agent.pop(agent_id, None)
        return self._offers.pop(offer_id) if offer_id else None

    def release(self, agent_id: str, resources: Resources) -> None:
        if agent_id in self.free:
            self.free[agent_id] = self.free[agent_id] + resources

    # -- offers --------------------------------------------------------------------------------

    def outstanding(self, agent_id: str) -> Offer | None:
        offer_id = self._by_agent.get(agent_id)
        return self._offers.get(offer_id) if offer_id else None

    def of_framework(self, framework_id: str) -> list[Offer]:
        return [o for o in self._offers.values() if o.framework_id == framework_id]

    def get(self, offer_id: str) -> Offer | None:
        return self._offers.get(offer_id)

    def resolve(self, offer_id: str) -> tuple[Offer | None, bool]:
        """The outstanding offer for ``offer_id``, following aliases; and whether an alias was used."""
        current, hops = offer_id, 0
        while current not in self._offers and current in self._aliases and hops < _ALIAS_HOPS:
            current, hops = self._aliases[current], hops + 1
        return self._offers.get(current), hops > 0

    def offer_free(self, agent_id: str, framework_id: str) -> Offer:
        """Move all of the agent's free resources into a new offer to ``framework_id``."""
        offer = Offer(f"{self._prefix}-O{next(self._ids)}", framework_id, agent_id, self.free[agent_id])
        self.free[agent_id] = Resources()
        self._offers[offer.offer_id] = offer
        self._by_agent[agent_id] = offer.offer_id
        return offer

    def merge_free(self, agent_id: str) -> tuple[Offer, Offer]:
        """Replace the agent's outstanding offer by one that also holds its free resources.

        Returns (old, new); the caller rescinds ``old``.
        """
        old = self._take(self._by_agent[agent_id])
        self.free[agent_id] = self.free[agent_id] + old.resources
        new = self.offer_free(agent_id, old.framework_id)
        self.alias(old.offer_id, new.offer_id)
        return old, new

    def consume(self, offer_id: str) -> Offer:
        """Remove an outstanding offer whose resources the caller now owns."""
        return self._take(offer_id)

    def give_back(self, offer_id: str) -> Offer | None:
        """Remove an outstanding offer and return its resources to the free pool."""
        offer = self._offers.get(offer_id)
        if offer is None:
            return None
        self._take(offer_id)
        self.release(offer.agent_id, offer.resources)
        return offer

    def alias(self, old_id: str, new_id: str) -> None:
        self._aliases[old_id] = new_id
        while len(self._aliases) > _ALIASES_KEPT:
            self._aliases.popitem(last=False)

    def _take(self, offer_id: str) -> Offer:
        offer = self._offers.pop(offer_id)
        if self._by_agent.get(offer.agent_id) == offer_id:
            del self._by_agent[offer.agent_id]
        return offer
