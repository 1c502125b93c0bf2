"""A new leader takes over tasks that are already running: what the previous leader's health checks found
is not saved, so it checks them again; and a load balancer that starts empty gets them back even when
nothing else happens to their request."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sing_backend.ids import TaskId
from sing_backend.models.deploy import DeployRequest
from sing_backend.models.request import SingularityRequest
from sing_backend.scheduler.core import Scheduler
from sing_backend.scheduler.entities import TaskEntry
from sing_backend.scheduler.health import Health
from sing_backend.scheduler.history_sink import HistorySink
from sing_backend.scheduler.lb_driver import LbOperation
from sing_backend.settings import Settings
from sing_backend.state.sqlite import SqliteStateStore

NOW = 1_000_000_000
RES = {"cpus": 0.1, "memoryMb": 32, "numPorts": 1}
CHECKED = {"command": "serve", "resources": RES, "healthcheck": {"uri": "/health"}}


class RecordingLoadBalancer:
    def __init__(self) -> None:
        self.submitted: list[LbOperation] = []

    def submit(self, operation: LbOperation) -> None:
        self.submitted.append(operation)


def new_scheduler(store: SqliteStateStore, now: list[int]) -> Scheduler:
    return Scheduler(Settings(), store, None, HistorySink(), clock=lambda: now[0])


def running_service(store: SqliteStateStore, request_id: str, deploy: dict[str, Any], *,
                    load_balanced: bool = False, cleaning: bool = False) -> str:
    """What a previous leader leaves in the state store: a service with an active deploy and one task
    RUNNING for a minute."""
    before = new_scheduler(store, [NOW - 120_000])
    before.lb = RecordingLoadBalancer()  # type: ignore[assignment]
    before.save_request(SingularityRequest.model_validate(
        {"id": request_id, "requestType": "SERVICE", "instances": 1, "loadBalanced": load_balanced}))
    before.deploy(DeployRequest.model_validate({"deploy": {"requestId": request_id, "id": "v1", **deploy}}))
    entry = before.requests[request_id]
    entry.active_deploy, entry.pending_deploy = entry.pending_deploy, None
    before._save_request(entry)
    tid = TaskId(request_id, "v1", NOW - 60_000, 1, "127.0.0.1", "127_0_0_1", "rack", "rack")
    task = {"taskId": tid.wire(), "taskRequest": {"pendingTask": {"pendingTaskId": {"requestId": request_id}}},
            "mesosTask": {"resources": [{"name": "ports", "ranges": {"range": [{"begin": 31000, "end": 31000}]}}]}}
    entry_task = TaskEntry(tid, task, "agent-1", state="TASK_RUNNING", running_since=NOW - 60_000,
                           cleanup={"cleanupType": "USER_REQUESTED"} if cleaning else None,
                           lb_state="ADDED" if load_balanced else None)
    before._save_task(entry_task)
    return tid.id


def test_a_new_leader_checks_the_running_tasks_again_at_once(tmp_path: Path) -> None:
    store = SqliteStateStore(tmp_path / "state.db")
    checked = running_service(store, "web", CHECKED)
    cleaning = running_service(store, "old", CHECKED, cleaning=True)
    unchecked = running_service(store, "worker", {"command": "work"})
    now = [NOW]
    leader = new_scheduler(store, now)
    leader.load()
    # Checked at once, not only once it is restarted (before, a new leader never checked it again).
    assert [t.id for t in leader.due_health_checks(now[0])] == [checked]
    state = leader.tasks[checked].health
    assert state is not None and state.status == Health.STARTING
    assert leader.tasks[cleaning].health is None and leader.tasks[unchecked].health is None
    # With a whole startup window from the take-over: not failed for the time it ran under the old leader.
    now[0] += 5_000
    leader.due_health_checks(now[0])
    assert state.status == Health.STARTING


def test_a_load_balancer_that_starts_empty_gets_the_running_tasks_back(tmp_path: Path) -> None:
    """The new leader's first round can run before its load balancer is up (nginx starting): the
    registration is skipped then. Taking the load balancer over plans the request again."""
    store = SqliteStateStore(tmp_path / "state.db")
    task_id = running_service(store, "web", {"command": "serve", "serviceBasePath": "/web", "resources": RES},
                              load_balanced=True)
    leader = new_scheduler(store, [NOW])
    leader.load()
    leader.run_round()  # the load balancer is not set up yet
    lb = RecordingLoadBalancer()
    leader.lb = lb  # type: ignore[assignment]
    leader.resume_load_balancer(empty=True)
    leader.run_round()
    assert [(op.kind, op.task_ids) for op in lb.submitted] == [("ADD", [task_id])]
    assert leader.tasks[task_id].lb_state == "ADDING"


def test_replacements_the_load_balancer_refuses_put_the_request_in_cooldown(tmp_path: Path) -> None:
    """Each refused replacement is killed and replaced: counted as a crash, a refusal that repeats ends in
    cool-down (replacements then wait), not in a launch-and-kill loop."""
    from sing_backend.models.common import RequestState
    from sing_backend.scheduler.lb_driver import LbOperation

    store = SqliteStateStore(tmp_path / "state.db")
    running_service(store, "web", {**CHECKED, "serviceBasePath": "/web"}, load_balanced=True)
    now = [NOW]
    sched = new_scheduler(store, now)
    sched.lb = RecordingLoadBalancer()  # type: ignore[assignment]
    sched.load()
    threshold = Settings().cooldown_failure_threshold
    for n in range(threshold):
        tid = TaskId("web", "v1", NOW + n, 2 + n, "127.0.0.1", "127_0_0_1", "rack", "rack")
        sched.tasks[tid.id] = TaskEntry(tid, {"taskId": tid.wire()}, "agent-1", state="TASK_RUNNING",
                                        lb_state="ADDING")
        assert sched.requests["web"].state == RequestState.ACTIVE
        sched.on_lb_result(LbOperation("ADD", "web", "web", {}, [tid.id]), "FAILED", "invalid port in upstream")
        assert sched.tasks[tid.id].cleanup["cleanupType"] == "UNHEALTHY_NEW_TASK"
        now[0] += 1000
    assert sched.requests["web"].state == RequestState.SYSTEM_COOLDOWN
