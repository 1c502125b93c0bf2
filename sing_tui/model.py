"""Plain functions from the API's JSON to what the screens show: rows, counts, formatted times.

No Textual here: these are unit-tested directly, and the screens stay thin.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

Json = Any
Clock = Callable[[], float]

TERMINAL_STATES = ("TASK_FINISHED", "TASK_FAILED", "TASK_KILLED", "TASK_LOST", "TASK_ERROR", "TASK_DROPPED",
                   "TASK_GONE", "TASK_GONE_BY_OPERATOR")
FAILED_STATES = ("TASK_FAILED", "TASK_LOST", "TASK_ERROR")
LONG_RUNNING = ("SERVICE", "WORKER")


def now_ms(clock: Clock = time.time) -> int:
    return int(clock() * 1000)


# ---- time
def fmt_age(ms: int | None, now: int) -> str:
    """How long ago, compact: 5s, 3m, 2h, 4d."""
    if not ms:
        return "-"
    secs = max(0, (now - ms) // 1000)
    return fmt_secs(secs)


def age_changes_at(ms: int | None, now: int) -> int:
    """When `fmt_age(ms, ...)` next reads differently from `fmt_age(ms, now)`: at the next second under a
    minute, the next minute under a day, then the next hour."""
    if not ms:
        return now + 86_400_000  # "-" for good; looked at again once a day costs nothing
    age = max(0, now - ms)
    step = 1000 if age < 60_000 else 60_000 if age < 86_400_000 else 3_600_000
    return ms + (age // step + 1) * step


def fmt_secs(secs: int) -> str:
    if secs < 60:
        return f"{secs}s"
    if secs < 3600:
        return f"{secs // 60}m"
    if secs < 86400:
        return f"{secs // 3600}h{(secs % 3600) // 60:02d}m"
    return f"{secs // 86400}d{(secs % 86400) // 3600}h"


def fmt_ts(ms: int | None) -> str:
    """An absolute time in UTC, so two operators in different zones read the same thing."""
    if not ms:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ms / 1000))


def fmt_local(ms: int | None, now: int | None = None) -> str:
    """An absolute time in the operator's own time zone, named ("2026-11-25 09:00:00 CET"): for what is
    still to come, like a scheduled request's next run. Given `now`, a time on the same day is just
    "09:00:00 CET"."""
    if not ms:
        return "-"
    at = time.localtime(ms / 1000)
    if now is not None and time.localtime(now / 1000)[:3] == at[:3]:
        return time.strftime("%H:%M:%S %Z", at)
    return time.strftime("%Y-%m-%d %H:%M:%S %Z", at)


def fmt_countdown(secs: int) -> str:
    """A span to the second while that matters: 45s, 3m 20s, 2h 05m, 4d 3h."""
    secs = max(0, secs)
    if secs < 60:
        return f"{secs}s"
    if secs < 3600:
        return f"{secs // 60}m {secs % 60:02d}s"
    if secs < 86400:
        return f"{secs // 3600}h {(secs % 3600) // 60:02d}m"
    return f"{secs // 86400}d {(secs % 86400) // 3600}h"


def fmt_until(ms: int, now: int, *, compact: bool = False) -> str:
    """"in 3m 20s" to a future time, "3m 20s late" past it (`compact`: "in 3m", "late 40s")."""
    secs = (ms - now) // 1000
    if compact:
        return f"in {fmt_secs(secs)}" if secs >= 0 else f"late {fmt_secs(-secs)}"
    return f"in {fmt_countdown(secs)}" if secs >= 0 else f"{fmt_countdown(-secs)} late"


def fmt_time(ms: int | None) -> str:
    if not ms:
        return "-"
    return time.strftime("%H:%M:%S", time.gmtime(ms / 1000))


def short_state(state: str) -> str:
    return state.removeprefix("TASK_")


def ended_state(updates: list[Json]) -> str | None:
    """A task's end among its history's updates (the last one), or None while it has none. Not simply
    the last update: a TASK_CLEANING note stamped by the scheduler's clock may sort after the end."""
    return next((u["taskState"] for u in reversed(updates) if u.get("taskState") in TERMINAL_STATES), None)


# ---- requests
def running_count(parent: Json) -> int:
    ids = parent.get("taskIds") or {}
    return len(ids.get("healthy", ())) + len(ids.get("notYetHealthy", ()))


def active_deploy_id(parent: Json) -> str:
    rds = parent.get("requestDeployState") or {}
    return (rds.get("activeDeploy") or {}).get("deployId", "")


def pending_deploy_id(parent: Json) -> str:
    rds = parent.get("requestDeployState") or {}
    return (rds.get("pendingDeploy") or {}).get("deployId", "")


REQUEST_COLUMNS = ("ID", "TYPE", "STATE", "INST", "NEXT RUN", "DEPLOY", "OWNERS")


def is_scheduled(parent: Json) -> bool:
    return (parent.get("request") or {}).get("requestType") == "SCHEDULED"


def next_run_cell(parent: Json, now: int) -> str:
    """The requests table's NEXT RUN: "in 14m" for a SCHEDULED request (from Sing's `nextRunAt`), why
    there is none ("running", "paused"...), and nothing for the other types."""
    if not is_scheduled(parent):
        return ""
    next_run = parent.get("nextRunAt")
    if isinstance(next_run, int | float) and next_run > 0:
        return fmt_until(int(next_run), now, compact=True)
    if running_count(parent):
        return "running"
    state = parent.get("state", "")
    if state in ("PAUSED", "FINISHED", "DELETING", "DELETED"):
        return state.lower()
    if not active_deploy_id(parent):
        return "no deploy"
    return "-"


def request_row(parent: Json, now: int) -> tuple[str, ...]:
    req = parent.get("request", {})
    deploy = active_deploy_id(parent) or "-"
    pending = pending_deploy_id(parent)
    if pending:
        deploy = f"{deploy}→{pending}"
    kind = req.get("requestType", "?")
    running = running_count(parent)
    # Long-running requests want `instances`; jobs just run, so only how many run now means anything.
    inst = f"{running}/{req.get('instances') or 1}" if kind in LONG_RUNNING else str(running)
    return (req.get("id", "?"), kind, parent.get("state", "?"), inst, next_run_cell(parent, now), deploy,
            ",".join(req.get("owners") or ()))


def next_run_line(parent: Json, now: int) -> str:
    """The request view's line for a SCHEDULED request: its schedule, and when it runs next in local
    time with how long until then."""
    req = parent.get("request") or {}
    expr = req.get("quartzSchedule") or req.get("schedule") or "?"
    zone = req.get("scheduleTimeZone")
    line = f"{expr}{f' ({zone})' if zone else ''} · next run "
    next_run = parent.get("nextRunAt")
    if isinstance(next_run, int | float) and next_run > 0:
        return line + f"{fmt_local(int(next_run))} ({fmt_until(int(next_run), now)})"
    reason = next_run_cell(parent, now)
    why = {"running": "after the current run", "-": "not queued yet"}.get(reason, f"none ({reason})")
    return line + why


_SCHEDULED_AT = re.compile(r"^scheduled to run at (\d+) \(epoch ms\)$")


def pending_reason(entry: Json, now: int) -> str:
    """Why a pending task waits, with the backend's "scheduled to run at <epoch ms>" made readable."""
    reason = entry.get("notPlacedReason", "") or ""
    m = _SCHEDULED_AT.match(reason)
    if m:
        at = int(m[1])
        return f"scheduled {fmt_until(at, now)} ({fmt_local(at, now)})"
    return reason


def request_matches(parent: Json, args: dict[str, str]) -> bool:
    """`:requests type=worker state=paused owner=x` (case-insensitive, prefix of the value is enough)."""
    req = parent.get("request", {})
    for key, want in args.items():
        want = want.lower()
        if key == "type":
            have = [req.get("requestType", "")]
        elif key == "state":
            have = [parent.get("state", "")]
            if want == "cooldown":
                want = "system_cooldown"
        elif key in ("owner", "owners"):
            have = list(req.get("owners") or ())
        elif key == "deploy":
            have = [active_deploy_id(parent), pending_deploy_id(parent)]
        else:
            have = [str(req.get(key, ""))]
        if not any(h.lower().startswith(want) for h in have):
            return False
    return True


REQUEST_FILTER_KEYS = ("type", "state", "owner", "deploy")


# ---- tasks
def task_id(obj: Json) -> str:
    """The task id string of a task, a task-id object or a task history row."""
    if isinstance(obj, str):
        return obj
    if "taskId" in obj:
        tid = obj["taskId"]
        return tid if isinstance(tid, str) else tid.get("id", "")
    return obj.get("id", "")


def task_ports(task: Json) -> list[int]:
    ports: list[int] = []
    for res in (task.get("mesosTask") or {}).get("resources", ()):
        if res.get("name") == "ports":
            for rng in res.get("ranges", {}).get("range", ()):
                ports.extend(range(int(rng["begin"]), int(rng["end"]) + 1))
    return ports


def task_resources(task: Json) -> dict[str, float]:
    out: dict[str, float] = {}
    for res in (task.get("mesosTask") or {}).get("resources", ()):
        if res.get("type") == "SCALAR":
            out[res["name"]] = float(res.get("scalar", {}).get("value", 0))
    if not out:
        dep = (task.get("taskRequest") or {}).get("deploy", {}).get("resources", {})
        out = {"cpus": float(dep.get("cpus", 0)), "mem": float(dep.get("memoryMb", 0))}
    return out


def task_env(task: Json) -> dict[str, str]:
    env = (task.get("mesosTask") or {}).get("command", {}).get("environment", {}).get("variables", ())
    return {v["name"]: v.get("value", "") for v in env}


def task_command(task: Json) -> str:
    return (task.get("mesosTask") or {}).get("command", {}).get("value", "") or \
        (task.get("taskRequest") or {}).get("deploy", {}).get("command", "")


TASK_COLUMNS = ("TASK", "REQUEST", "DEPLOY", "#", "HOST", "STATE", "AGE")


def task_row(task: Json, state: str, now: int) -> tuple[str, ...]:
    """A row of the tasks view from a task or a task-id object (what /tasks/active/states carries)."""
    tid = task.get("taskId", task)
    return (tid["id"], tid["requestId"], tid["deployId"], str(tid.get("instanceNo", "")), tid.get("host", ""),
            short_state(state), fmt_age(tid.get("startedAt"), now))


def history_row(row: Json, now: int) -> tuple[str, ...]:
    """A row of /history/request/{id}/tasks (task id + last status)."""
    tid = row["taskId"]
    return (tid["id"], tid.get("deployId", ""), str(tid.get("instanceNo", "")), tid.get("host", ""),
            short_state(row.get("lastTaskStatus") or "?"), fmt_age(row.get("updatedAt"), now))


def updates_timeline(updates: Iterable[Json], started_at: int | None = None) -> list[tuple[str, str, str, str]]:
    """(time, +elapsed since start, state, message) for each status update."""
    out = []
    for u in updates:
        ts = u.get("timestamp", 0)
        since = f"+{(ts - started_at) / 1000:.1f}s" if started_at and ts >= started_at else ""
        out.append((fmt_ts(ts), since, short_state(u.get("taskState", "?")), u.get("statusMessage", "") or ""))
    return out


def is_failure(state: str | None) -> bool:
    return bool(state) and state in FAILED_STATES  # type: ignore[operator]


# ---- agents and racks
AGENT_COLUMNS = ("AGENT", "HOST", "RACK", "STATE", "CPUS", "MEM MB", "TASKS")
RACK_COLUMNS = ("RACK", "STATE", "AGENTS", "TASKS", "SINCE")


def deploy_resources(parents: Iterable[Json]) -> dict[tuple[str, str], dict[str, float]]:
    """cpus and mem of each active or pending deploy, from the requests list."""
    out: dict[tuple[str, str], dict[str, float]] = {}
    for parent in parents:
        for key in ("activeDeploy", "pendingDeploy"):
            dep = parent.get(key)
            if dep:
                res = dep.get("resources") or {}
                out[(dep.get("requestId", ""), dep.get("id", ""))] = {"cpus": float(res.get("cpus", 0)),
                                                                     "mem": float(res.get("memoryMb", 0))}
    return out


def agent_usage(states: Iterable[Json], agents: Iterable[Json],
                resources: dict[tuple[str, str], dict[str, float]]) -> dict[str, dict[str, float]]:
    """cpus, mem and task count in use per agent id, from the active task states (small) and the deploys'
    resources, not from /tasks/active (tens of MB at 20,000 tasks). A task of a deploy that is neither
    active nor pending (being replaced) counts as a task with unknown resources."""
    by_host = {a.get("host"): a["id"] for a in agents}
    use: dict[str, dict[str, float]] = {}
    for s in states:
        tid = s.get("taskId") or {}
        agent = by_host.get(tid.get("host"))
        if agent is None:
            continue
        res = resources.get((tid.get("requestId", ""), tid.get("deployId", "")), {})
        u = use.setdefault(agent, {"cpus": 0.0, "mem": 0.0, "tasks": 0})
        u["cpus"] += res.get("cpus", 0.0)
        u["mem"] += res.get("mem", 0.0)
        u["tasks"] += 1
    return use


def _num(x: float) -> str:
    return f"{x:.0f}" if x == int(x) else f"{x:.1f}"


def agent_row(agent: Json, usage: dict[str, float] | None) -> tuple[str, ...]:
    res = agent.get("resources") or {}
    u = usage or {"cpus": 0.0, "mem": 0.0, "tasks": 0}
    state = agent.get("currentState", {}).get("state", "?")
    return (agent["id"], agent.get("host", ""), agent.get("rackId", ""), state,
            f"{_num(u['cpus'])}/{_num(float(res.get('numCpus', 0)))}",
            f"{_num(u['mem'])}/{_num(float(res.get('memoryMegaBytes', 0)))}", str(int(u["tasks"])))


def rack_row(rack: Json, agents: list[Json], usage: dict[str, dict[str, float]], now: int) -> tuple[str, ...]:
    mine = [a for a in agents if a.get("rackId") == rack["id"]]
    tasks = sum(int(usage.get(a["id"], {}).get("tasks", 0)) for a in mine)
    return (rack["id"], rack.get("currentState", {}).get("state", "?"), str(len(mine)), str(tasks),
            fmt_age(rack.get("currentState", {}).get("timestamp"), now))


# ---- dashboard
def state_counts(state: Json) -> dict[str, list[tuple[str, int]]]:
    """The dashboard's count lines: requests by state, tasks, machines, provisioning."""
    g = state.get
    return {
        "Requests": [("active", g("activeRequests", 0)), ("paused", g("pausedRequests", 0)),
                     ("cooldown", g("cooldownRequests", 0)), ("finished", g("finishedRequests", 0)),
                     ("pending", g("pendingRequests", 0)), ("deleting", g("cleaningRequests", 0))],
        "Tasks": [("active", g("activeTasks", 0)), ("launching", g("launchingTasks", 0)),
                  ("pending", g("scheduledTasks", 0)), ("late", g("lateTasks", 0)),
                  ("cleaning", g("cleaningTasks", 0))],
        "Agents": [("active", g("activeAgents", 0)), ("decommissioning", g("decommissioningAgents", 0)),
                   ("dead", g("deadAgents", 0)), ("racks", g("activeRacks", 0)),
                   ("racks dead", g("deadRacks", 0))],
        "Deploys": [("in progress", g("numDeploys", 0)), ("under-provisioned", g("underProvisionedRequests", 0)),
                    ("over-provisioned", g("overProvisionedRequests", 0))],
    }


def leader_line(state: Json, now: int) -> str:
    hosts = state.get("hostStates") or []
    if not hosts:
        return "no scheduler host reported"
    parts = []
    for index, h in enumerate(hosts):
        role = "leader" if h.get("master") else "standby"
        if index:  # the other backends: the answering one (first) knows only their role
            parts.append(f"{_backend(h)} ({role})")
            continue
        mesos = "mesos connected" if h.get("mesosConnected") else "MESOS DISCONNECTED"
        zookeeper = ""
        if "zookeeperConnected" in state:  # production mode only
            zookeeper = "ZooKeeper connected, " if state["zookeeperConnected"] else "ZOOKEEPER DISCONNECTED, "
        parts.append(f"{_backend(h)} ({role}, {h.get('driverStatus', '?')}, {mesos}, {zookeeper}"
                     f"up {fmt_secs(int(h.get('uptime', 0)) // 1000)})")
    leader = state.get("leader")
    if leader and all(_backend(h) != leader for h in hosts):
        parts.append(f"leader: {leader}")
    queued = state.get("queuedWrites") or 0
    if queued:  # writes made on standbys that no leader has applied yet
        parts.append(f"{queued} write{'s' if queued != 1 else ''} queued for the leader")
    return "; ".join(parts)


def _backend(host: Json) -> str:
    """A backend of /api/state's hostStates, by the URL it serves (a backend before that field: its hostname,
    which then held the URL)."""
    return str(host.get("url") or host.get("hostname", "?"))


@dataclass(frozen=True)
class Problem:
    """Something wrong on the backend's side that every screen shows: a short badge, and what it means."""

    badge: str
    meaning: str


def cluster_problems(state: Json, *, stale: bool) -> tuple[Problem, ...]:
    """What /api/state (and whether it came stale) says is wrong with the backend's own connections."""
    # Said of "this backend": a standby that lost ZooKeeper (or its leader) says so while the leader,
    # elsewhere, may be scheduling as usual.
    problems = []
    if state.get("zookeeperConnected") is False:
        problems.append(Problem("ZOOKEEPER DOWN", "this backend cannot reach ZooKeeper: it does not schedule, "
                                                  "and shows what it last knew"))
    if stale:
        # Queued in ZooKeeper for the next leader, while this backend reaches ZooKeeper.
        changes = "changes are refused" if state.get("zookeeperConnected") is False else \
            "changes wait in a queue for the next leader"
        problems.append(Problem("NO LEADER", f"this backend reaches no leader: the data is its last snapshot, "
                                             f"and {changes}"))
    hosts = state.get("hostStates") or []
    if hosts and hosts[0].get("master") and hosts[0].get("mesosConnected") is False:
        problems.append(Problem("MESOS DOWN", "the leader has lost the Mesos master: tasks keep running, new "
                                              "ones wait until it is back"))
    return tuple(problems)


PENDING_COLUMNS = ("PENDING TASK", "WAITING", "WHY NOT PLACED")


def pending_row(entry: Json, now: int) -> tuple[str, ...]:
    pid = entry["pendingTask"]["pendingTaskId"]
    return (f"{pid['requestId']}#{pid.get('instanceNo', '?')}", fmt_age(pid.get("createdAt"), now),
            pending_reason(entry, now))


FAILURE_COLUMNS = ("FAILED TASK", "STATUS", "WHEN", "HOST")


def failure_row(row: Json, now: int) -> tuple[str, ...]:
    tid = row["taskId"]
    return (tid["id"], short_state(row.get("lastTaskStatus", "?")), fmt_age(row.get("updatedAt"), now),
            tid.get("host", ""))


# ---- describe
def describe(obj: Json, prefix: str = "", depth: int = 0) -> list[tuple[str, str]]:
    """Flatten JSON into (dotted key, value) pairs for the `d` describe view."""
    out: list[tuple[str, str]] = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            key = f"{prefix}.{k}" if prefix else str(k)
            if isinstance(v, dict | list) and v and depth < 6:
                out += describe(v, key, depth + 1)
            else:
                out.append((key, _scalar(v, k)))
    elif isinstance(obj, list):
        if all(not isinstance(v, dict | list) for v in obj):
            out.append((prefix, ", ".join(_scalar(v, "") for v in obj)))
        else:
            for i, v in enumerate(obj):
                out += describe(v, f"{prefix}[{i}]", depth + 1)
    else:
        out.append((prefix, _scalar(obj, prefix)))
    return out


def _scalar(v: Any, key: str) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int) and str(key).lower().endswith(("at", "timestamp")) and v > 10**12:
        return f"{v} ({fmt_ts(v)} UTC)"
    if isinstance(v, dict | list):
        return "{}" if isinstance(v, dict) else "[]"
    return str(v)
