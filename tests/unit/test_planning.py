from __future__ import annotations

from sing_backend.models.common import PendingType, RequestState, TaskCleanupType
from sing_backend.scheduler.planning import (
    LiveTask,
    Pending,
    RequestView,
    healthy_count,
    lowest_free_instance,
    plan_long_running,
)


def view(instances=2, state=RequestState.ACTIVE, active="v1", pending=None) -> RequestView:
    return RequestView("web", True, state, instances, active, pending)


def test_launches_missing_instances():
    plan = plan_long_running(view(3), [LiveTask("t1", "v1", 1)], [])
    assert plan.launch == [("v1", 2, PendingType.TASK_DONE), ("v1", 3, PendingType.TASK_DONE)]
    assert plan.kill == []


def test_pending_instances_are_not_launched_twice():
    plan = plan_long_running(view(2), [], [Pending("p1", "v1", 1)])
    assert plan.launch == [("v1", 2, PendingType.TASK_DONE)]


def test_scale_down_kills_highest_instances():
    live = [LiveTask(f"t{i}", "v1", i) for i in (1, 2, 3)]
    plan = plan_long_running(view(1), live, [Pending("p4", "v1", 4)])
    assert plan.kill == [("t2", TaskCleanupType.SCALING_DOWN), ("t3", TaskCleanupType.SCALING_DOWN)]
    assert plan.drop_pending == ["p4"]


def test_paused_request_drops_pending_and_launches_nothing():
    plan = plan_long_running(view(2, RequestState.PAUSED), [], [Pending("p1", "v1", 1)])
    assert plan.launch == [] and plan.drop_pending == ["p1"]


def test_new_deploy_launches_beside_old_tasks():
    live = [LiveTask("t1", "v1", 1), LiveTask("t2", "v1", 2)]
    plan = plan_long_running(view(2, pending="v2"), live, [])
    assert plan.launch == [("v2", 1, PendingType.NEW_DEPLOY), ("v2", 2, PendingType.NEW_DEPLOY)]
    assert plan.kill == []


def test_cleaning_tasks_are_replaced_for_bounce():
    live = [LiveTask("t1", "v1", 1, cleaning=True)]
    plan = plan_long_running(view(1), live, [])
    assert plan.launch == [("v1", 1, PendingType.TASK_DONE)]


def test_pending_of_unknown_deploy_is_dropped():
    plan = plan_long_running(view(1), [LiveTask("t1", "v1", 1)], [Pending("old", "v0", 1)])
    assert plan.drop_pending == ["old"]


def test_healthy_needs_running_long_enough():
    live = [LiveTask("a", "v2", 1, running_since=1000), LiveTask("b", "v2", 2, running_since=5000),
            LiveTask("c", "v2", 3)]
    assert healthy_count(live, "v2", now_ms=6000, healthy_after_ms=2000) == 1
    assert healthy_count(live, "v2", now_ms=7000, healthy_after_ms=2000) == 2


def test_lowest_free_instance():
    assert lowest_free_instance(set()) == 1
    assert lowest_free_instance({1, 2, 4}) == 3
