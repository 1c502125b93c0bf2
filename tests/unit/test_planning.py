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


def test_replaceable_now_keeps_capacity():
    from sing_backend.scheduler.planning import replaceable_now

    # 3 instances, 3 old tasks waiting: a full bounce waits for 3 healthy replacements...
    assert replaceable_now(3, 2, 3, all_at_once=True) == 0
    assert replaceable_now(3, 3, 3, all_at_once=True) == 3
    # ...an incremental one lets one old task go per healthy replacement.
    assert replaceable_now(3, 0, 3, all_at_once=False) == 0
    assert replaceable_now(3, 1, 3, all_at_once=False) == 1
    assert replaceable_now(1, 3, 3, all_at_once=False) == 1


def test_step_targets_for_steps_and_canary():
    from sing_backend.scheduler.planning import StepPlan, step_target

    assert step_target(StepPlan(None), 5, 0) == 5
    steps = StepPlan(2)
    assert [step_target(steps, 5, i) for i in range(4)] == [2, 4, 5, 5]
    canary = StepPlan(1, first_steps=2)
    assert [step_target(canary, 10, i) for i in range(3)] == [1, 2, 10]


def test_healthy_uses_check_verdict_when_there_is_one():
    from sing_backend.scheduler.planning import is_healthy

    assert not is_healthy(LiveTask("a", "v", 1, running_since=0, healthy=False), 10_000, 0)
    assert is_healthy(LiveTask("a", "v", 1, running_since=0, healthy=True), 0, 10_000)
    assert not is_healthy(LiveTask("a", "v", 1, running_since=None, healthy=None), 10_000, 0)
