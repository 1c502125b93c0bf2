"""Parsing and formatting: filters, commands, form values, rows, config, back-off, log tailing."""

from __future__ import annotations

from pathlib import Path

import pytest

from sing_tui.config import ConfigError, load_config
from sing_tui.connection import Connection, backoff
from sing_tui.logtail import LogTail
from sing_tui.model import (
    cluster_problems,
    describe,
    fmt_age,
    fmt_countdown,
    fmt_local,
    fmt_until,
    leader_line,
    next_run_cell,
    next_run_line,
    pending_reason,
    request_matches,
    request_row,
    task_ports,
)
from sing_tui.query import (
    CommandError,
    Filter,
    parse_command,
    parse_duration,
    parse_env,
    parse_instances,
    parse_run_id,
)

from .conftest import set_time_zone
from .fake_api import FakeSingApi


def test_filter_regex_inverse_and_bad_regex() -> None:
    f = Filter.parse("web|job")
    assert f.matches("demo-web") and f.matches("DEMO-JOB") and not f.matches("worker")
    inv = Filter.parse("!web")
    assert not inv.matches("demo-web") and inv.matches("demo-worker")
    bad = Filter.parse("demo[")
    assert bad.note and bad.matches("a demo[ b") and not bad.matches("demo")
    assert not Filter.parse("").active and Filter.parse("").matches("anything")


def test_commands() -> None:
    cmd = parse_command(":requests type=worker state=paused /web")
    assert (cmd.view, cmd.params, cmd.filter) == ("requests", {"type": "worker", "state": "paused"}, "web")
    assert parse_command("request demo-web").arg == "demo-web"
    assert parse_command("tasks").view == "tasks"
    assert parse_command("agents").view == "agents"
    with pytest.raises(CommandError, match="unknown command"):
        parse_command("pods")
    with pytest.raises(CommandError, match="exactly one id"):
        parse_command("request")
    with pytest.raises(CommandError, match="unknown filter colour"):
        parse_command("requests colour=red")


def test_form_values_refused_with_reasons() -> None:
    assert parse_instances(" 3 ") == 3
    with pytest.raises(ValueError, match="not a whole number"):
        parse_instances("three")
    with pytest.raises(ValueError, match="at least 1"):
        parse_instances("0")
    with pytest.raises(ValueError, match="maxScale 5"):
        parse_instances("6", maximum=5)
    assert parse_env('A=1 B="two words"') == {"A": "1", "B": "two words"}
    with pytest.raises(ValueError, match="not NAME=value"):
        parse_env("oops")
    with pytest.raises(ValueError, match="valid variable name"):
        parse_env("1A=x")
    assert parse_run_id("") is None and parse_run_id("r-1") == "r-1"
    with pytest.raises(ValueError, match="run id"):
        parse_run_id("has space")
    assert parse_duration("30m") == 1_800_000 and parse_duration("") is None
    with pytest.raises(ValueError, match="duration"):
        parse_duration("soon")


def test_request_rows_and_query() -> None:
    fake = FakeSingApi()
    now = fake.now_ms
    parents = {p["request"]["id"]: p for p in fake.routes["/api/requests"]}
    assert request_row(parents["demo-web"], now) == ("demo-web", "SERVICE", "ACTIVE", "2/2", "", "v1",
                                                     "demo@example.com")
    assert request_row(parents["demo-job"], now)[3].isdigit()  # jobs: how many run now, no "wanted"
    cron = parents["demo-cron"]
    assert request_row(cron, now)[4] == f"in {(cron['nextRunAt'] - now) // 1000}s"
    assert request_matches(parents["demo-worker"], {"type": "work"})
    assert not request_matches(parents["demo-worker"], {"state": "paused"})
    assert request_matches(parents["demo-web"], {"owner": "demo@"})


def test_task_details_and_describe() -> None:
    fake = FakeSingApi()
    task = next(t for t in fake.routes["/api/tasks/active"] if t["taskId"]["requestId"] == "demo-web")
    assert task_ports(task) and all(1024 <= p < 65536 for p in task_ports(task))
    pairs = dict(describe({"a": {"b": 1, "startedAt": 1795591709601}, "l": [1, 2]}))
    assert pairs["a.b"] == "1" and "UTC" in pairs["a.startedAt"] and pairs["l"] == "1, 2"
    assert fmt_age(1000, 61_000) == "1m" and fmt_age(None, 5) == "-"


def test_backoff_doubles_and_caps() -> None:
    assert [backoff(n, 2, 30) for n in range(7)] == [2, 2, 4, 8, 16, 30, 30]
    conn = Connection("u").down("refused", 2, 30).down("refused", 2, 30)
    assert conn.failures == 2 and conn.retry_in == 4 and conn.ok is False
    assert conn.up(1.0).ok and conn.up(1.0).failures == 0


def test_config_file_env_and_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "tui.toml"
    path.write_text('url = "http://a:1"\nread_only = true\n[keymap]\n"request.scale" = "S"\n[log]\ntail_kb = 8\n')
    cfg = load_config(path)
    assert (cfg.url, cfg.read_only, cfg.keymap, cfg.log_tail_bytes) == ("http://a:1", True, {"request.scale": "S"},
                                                                        8192)
    monkeypatch.setenv("SING_URL", "http://b:2")
    assert load_config(path).url == "http://b:2"
    assert load_config(path, url="http://c:3").url == "http://c:3"
    path.write_text("colour = 1\n")
    with pytest.raises(ConfigError, match="unknown setting"):
        load_config(path)
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "missing.toml")
    monkeypatch.delenv("SING_URL")
    with pytest.raises(ConfigError, match="http://"):
        load_config(url="ftp://x")


async def test_logtail_reads_whole_lines_by_offset() -> None:
    fake = FakeSingApi()
    path = next(p for p, text in fake.files.items() if text.count("\n") >= 2)
    task_id = path.split("/")[0]
    fake.files[path] = "one\ntwo\nthr"
    client = fake.client()
    tail = LogTail(client, task_id, path, tail_bytes=8)  # starts mid-file: the cut line is dropped
    assert await tail.start() == ["two"]
    fake.files[path] += "ee\nfour\n"
    assert await tail.poll() == ["three", "four"]
    assert await tail.poll() == []
    await client.aclose()


def test_next_run_of_scheduled_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    hour = 3_600_000
    now = 1_795_593_600_000  # 2026-11-25 08:00:00 UTC
    parent = {"request": {"id": "cron", "requestType": "SCHEDULED", "quartzSchedule": "0 0 * * * ?"},
              "state": "ACTIVE", "nextRunAt": now + 200_000,
              "requestDeployState": {"activeDeploy": {"deployId": "v1"}}}
    assert next_run_cell(parent, now) == "in 3m"
    assert next_run_line(parent, now) == "0 0 * * * ? · next run 2026-11-25 08:03:20 UTC (in 3m 20s)"
    assert next_run_cell({**parent, "nextRunAt": now - 40_000}, now) == "late 40s"
    assert fmt_until(now - 40_000, now) == "40s late"
    no_run = {k: v for k, v in parent.items() if k != "nextRunAt"}
    assert next_run_cell(no_run, now) == "-"
    assert next_run_cell({**no_run, "taskIds": {"healthy": [{"id": "t"}]}}, now) == "running"
    assert next_run_line({**no_run, "taskIds": {"healthy": [{"id": "t"}]}}, now).endswith("after the current run")
    assert next_run_cell({**no_run, "state": "PAUSED"}, now) == "paused"
    assert next_run_cell({**no_run, "requestDeployState": {}}, now) == "no deploy"
    assert next_run_cell({"request": {"requestType": "WORKER"}, "nextRunAt": now}, now) == ""
    assert [fmt_countdown(s) for s in (5, 200, 7500, 200_000)] == ["5s", "3m 20s", "2h 05m", "2d 7h"]
    # Local time, in the operator's zone and named; a time on the same day needs no date.
    set_time_zone(monkeypatch, "America/New_York")
    assert fmt_local(now + hour) == "2026-11-25 04:00:00 EST"
    assert fmt_local(now + hour, now) == "04:00:00 EST"
    assert next_run_line({**parent, "request": {**parent["request"], "scheduleTimeZone": "Europe/Paris"}},
                         now) == "0 0 * * * ? (Europe/Paris) · next run 2026-11-25 03:03:20 EST (in 3m 20s)"
    entry = {"notPlacedReason": f"scheduled to run at {now + 200_000} (epoch ms)"}
    assert pending_reason(entry, now) == "scheduled in 3m 20s (03:03:20 EST)"
    assert pending_reason({"notPlacedReason": "no agent with enough memory"}, now) == "no agent with enough memory"


def test_cluster_problems_from_the_state_and_its_staleness() -> None:
    healthy = {"zookeeperConnected": True, "hostStates": [{"master": True, "mesosConnected": True}]}
    assert cluster_problems(healthy, stale=False) == ()
    assert cluster_problems({"hostStates": [{"master": True, "mesosConnected": True}]}, stale=False) == ()  # local
    zk_down = {"zookeeperConnected": False, "hostStates": [{"master": False, "mesosConnected": False}]}
    assert [p.badge for p in cluster_problems(zk_down, stale=True)] == ["ZOOKEEPER DOWN", "NO LEADER"]
    assert cluster_problems(zk_down, stale=True)[1].meaning.endswith("changes are refused")
    # Reaching ZooKeeper but no leader (a fail-over): a write is queued for the next leader, which applies it.
    (no_leader,) = cluster_problems({"zookeeperConnected": True, "hostStates": [{"master": False}]}, stale=True)
    assert no_leader.meaning.endswith("changes wait in a queue for the next leader")
    mesos_down = {"zookeeperConnected": True, "hostStates": [{"master": True, "mesosConnected": False}]}
    [problem] = cluster_problems(mesos_down, stale=False)
    assert problem.badge == "MESOS DOWN" and "tasks keep running" in problem.meaning
    # A standby is not connected to Mesos by design: nothing wrong.
    standby = {"zookeeperConnected": True, "hostStates": [{"master": False, "mesosConnected": False}]}
    assert cluster_problems(standby, stale=False) == ()


def test_leader_line_names_zookeeper_and_another_leader() -> None:
    host = {"hostname": "http://b:7099", "master": False, "driverStatus": "DRIVER_NOT_STARTED", "mesosConnected": False,
            "uptime": 65_000}
    line = leader_line({"hostStates": [host], "zookeeperConnected": True, "leader": "http://a:7099"}, 0)
    assert line == ("http://b:7099 (standby, DRIVER_NOT_STARTED, MESOS DISCONNECTED, ZooKeeper connected, up 1m); "
                    "leader: http://a:7099")
    assert "ZOOKEEPER DISCONNECTED" in leader_line({"hostStates": [host], "zookeeperConnected": False}, 0)
    assert "ZooKeeper" not in leader_line({"hostStates": [host]}, 0)  # local mode says nothing of it
    assert leader_line({"hostStates": [host], "zookeeperConnected": True, "queuedWrites": 3}, 0).endswith(
        "; 3 writes queued for the leader")
    assert "queued" not in leader_line({"hostStates": [host], "zookeeperConnected": True, "queuedWrites": 0}, 0)
    # The leader answers for every backend in the election; of the others, only their role is known.
    leading = {**host, "hostname": "http://a:7099", "master": True, "driverStatus": "DRIVER_RUNNING",
               "mesosConnected": True}
    line = leader_line({"hostStates": [leading, {"hostname": "http://b:7099", "master": False}],
                        "zookeeperConnected": True, "leader": "http://a:7099"}, 0)
    assert line == ("http://a:7099 (leader, DRIVER_RUNNING, mesos connected, ZooKeeper connected, up 1m); "
                    "http://b:7099 (standby)")
    # Backends now give their hostname as a host name, and their URL beside it.
    current = [{**leading, "hostname": "a", "url": "http://a:7099"}, {"hostname": "b", "url": "http://b:7099",
                                                                      "master": False}]
    assert leader_line({"hostStates": current, "zookeeperConnected": True, "leader": "http://a:7099"}, 0) == line
