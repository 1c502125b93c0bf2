"""Offer bookkeeping: leftovers, freed resources, filters, revive/suppress, invalid launches."""

from __future__ import annotations

import time

from .conftest import Harness
from .helpers import port_ranges, scalar, task_info


def test_leftover_is_reoffered_at_once_and_freed_resources_merge(harness: Harness) -> None:
    sched = harness.sched
    offer = sched.offer_for("agent-1")
    first_port = port_ranges(offer)[0][0]
    info = task_info("sleeper", offer, "sleep 1000", cpus=1.5, mem=1000, ports=[first_port + 5])
    harness.launch(offer, [info])
    leftover = sched.wait(
        lambda: next((o for o in sched.offers.values() if o["agent_id"]["value"] == "agent-1"), None),
        what="the leftover offer",
    )
    assert leftover["id"] != offer["id"]
    assert scalar(leftover, "cpus") == 2.5 and scalar(leftover, "mem") == 3096
    assert port_ranges(leftover) == [(first_port, first_port + 4), (first_port + 6, first_port + 999)]

    harness.driver.killTask({"value": "sleeper"})
    sched.status("sleeper", "TASK_KILLED")
    # The outstanding leftover is rescinded and replaced by one holding everything again.
    sched.wait(lambda: any(k == "rescind" and p == leftover["id"]["value"] for k, p in sched.events))
    merged = sched.offer_for("agent-1")
    assert scalar(merged, "cpus") == 4.0 and scalar(merged, "mem") == 4096
    assert port_ranges(merged) == [(first_port, first_port + 999)]


def test_accept_of_a_replaced_offer_still_launches(harness: Harness) -> None:
    sched = harness.sched
    offer = sched.offer_for("agent-2")
    harness.launch(offer, [task_info("a", offer, "sleep 1000")])
    sched.status("a", "TASK_RUNNING")
    # Accepting the consumed offer again races the leftover offer: it resolves to the leftover.
    harness.launch(offer, [task_info("b", offer, "sleep 1000")])
    sched.status("b", "TASK_RUNNING")
    # But not beyond what is really free: that is a dropped task, not an over-commit.
    harness.launch(offer, [task_info("c", offer, "sleep 1000", cpus=10)])
    assert sched.status("c", "TASK_DROPPED")["reason"] == "REASON_INVALID_OFFERS"


def test_decline_filters_the_agent_for_refuse_seconds(harness: Harness) -> None:
    sched = harness.sched
    offer = sched.offer_for("agent-3")
    declined_at = time.monotonic()
    sched.forget(offer)
    harness.driver.declineOffer(offer["id"], filters={"refuse_seconds": 0.5})
    again = sched.offer_for("agent-3", timeout=5)
    assert time.monotonic() - declined_at >= 0.45
    assert again["id"] != offer["id"] and scalar(again, "cpus") == 4.0


def test_revive_clears_filters_and_suppress_stops_offers(harness: Harness) -> None:
    sched = harness.sched
    offers = [sched.offer_for(a) for a in ("agent-1", "agent-2", "agent-3")]
    harness.driver.suppressOffers()
    for offer in offers:
        sched.forget(offer)
    harness.driver.declineOffer([o["id"] for o in offers], filters={"refuse_seconds": 0.01})
    # A negative check needs a window: the filters expire after 10 ms, yet nothing may arrive.
    time.sleep(0.3)
    assert not sched.offers
    harness.driver.declineOffer([], filters={"refuse_seconds": 1000})
    harness.driver.reviveOffers()
    for agent in ("agent-1", "agent-2", "agent-3"):
        sched.offer_for(agent, timeout=2)


def test_invalid_launches_are_reported_not_crashed(harness: Harness) -> None:
    sched = harness.sched
    offer = sched.offer_for("agent-1")
    low, high = port_ranges(offer)[0]
    bad = [
        task_info("too-big", offer, "true", cpus=64),
        task_info("bad-port", offer, "true", ports=[high + 1]),
        task_info("bad/id", offer, "true"),
        {**task_info("no-command", offer, "true"), "command": {"value": ""}},
        {**task_info("gpu", offer, "true"), "resources": [{"name": "gpus", "type": "SCALAR", "scalar": {"value": 1}}]},
        task_info("good", offer, "true", ports=[low]),
        task_info("good", offer, "true"),  # duplicate id
    ]
    harness.launch(offer, bad)
    for task_id in ("too-big", "bad-port", "bad/id", "no-command", "gpu"):
        error = sched.status(task_id, "TASK_ERROR")
        assert error["reason"] == "REASON_TASK_INVALID" and "uuid" not in error
    assert "already in use" in sched.status("good", "TASK_ERROR")["message"]
    sched.status("good", "TASK_FINISHED")
    # An offer that was never made drops the tasks.
    harness.driver.launchTasks({"value": "no-such-offer"}, [task_info("orphan", offer, "true")])
    assert sched.status("orphan", "TASK_DROPPED")["reason"] == "REASON_INVALID_OFFERS"
