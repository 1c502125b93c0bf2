"""The sandbox: environment and env file, shell or argv, another user, successful exit codes."""

from __future__ import annotations

import os
import pwd
from pathlib import Path

import orjson
import pytest

from sing_backend.executor.payload import PayloadError, TaskSpec, attach_payload, decode_payload, task_payload

from .helpers import deploy_task, running_cluster


def test_environment_env_file_and_task_json(tmp_path: Path) -> None:
    env = {"GREETING": "hello world", "QUOTED": "it's \"here\"", "INSTANCE_NO": "2"}
    with running_cluster(tmp_path) as h:
        h.launch(deploy_task("envy", 'echo "$GREETING|$QUOTED|$INSTANCE_NO|$MESOS_TASK_ID|$SING_TASK"', env=env))
        h.sched.status("envy", "TASK_FINISHED")
        task_dir = h.task_dir("envy")
        out = (task_dir / "stdout.log").read_text().strip().split("|")
        assert out[:4] == ["hello world", "it's \"here\"", "2", "envy"]
        assert out[4].endswith("/envy")
        # deploy.env is a shell file giving back exactly the task's environment.
        sourced = os.popen(f". {task_dir / 'deploy.env'}; printf %s \"$QUOTED\"").read()
        assert sourced == env["QUOTED"]
        info = orjson.loads((task_dir / "task.json").read_bytes())
        assert decode_payload(info["data"])["requestId"] == "req"


def test_shell_and_argv_commands(tmp_path: Path) -> None:
    argv = {"shell": False, "value": "/usr/bin/printf", "arguments": ["printf", "%s-%s", "a b", "$HOME"]}
    with running_cluster(tmp_path) as h:
        h.launch([deploy_task("argv", argv), deploy_task("shell", "printf '%s-%s' 'a b' x$((1 + 2))")])
        h.sched.status("argv", "TASK_FINISHED")
        h.sched.status("shell", "TASK_FINISHED")
        assert (h.task_dir("argv") / "stdout.log").read_text() == "a b-$HOME"  # no shell: nothing expanded
        assert (h.task_dir("shell") / "stdout.log").read_text() == "a b-x3"


def test_successful_exit_codes(tmp_path: Path) -> None:
    deploy = {"executorData": {"successfulExitCodes": [0, 3]}}
    with running_cluster(tmp_path) as h:
        h.launch([deploy_task("three", "exit 3", deploy=deploy), deploy_task("four", "exit 4", deploy=deploy)])
        assert h.sched.status("three", "TASK_FINISHED")["message"] == "Exited with status 3"
        failed = h.sched.status("four", "TASK_FAILED")
        assert failed["message"] == "Exited with status 4"


@pytest.mark.skipif(os.geteuid() != 0, reason="running a task as another user needs a root agent")
def test_the_task_runs_as_the_deploy_user(tmp_path: Path) -> None:
    nobody = pwd.getpwnam("nobody")
    with running_cluster(tmp_path) as h:
        h.launch([deploy_task("as-nobody", "id -un; touch mine; echo $HOME", deploy={"user": "nobody"}),
                  deploy_task("as-ghost", "true", deploy={"user": "no-such-user-here"})])
        h.sched.status("as-nobody", "TASK_FINISHED")
        task_dir = h.task_dir("as-nobody")
        assert (task_dir / "stdout.log").read_text().split() == ["nobody", nobody.pw_dir]
        assert (task_dir / "app" / "mine").stat().st_uid == nobody.pw_uid
        failed = h.sched.status("as-ghost", "TASK_FAILED")
        assert failed["message"] == "Failed to launch: user 'no-such-user-here' does not exist on this host"


def test_payload_from_a_deploy() -> None:
    deploy = {
        "requestId": "web", "id": "v2", "user": "app",
        "uris": [{"uri": "https://example.com/pkg/app.tar.gz"}, {"uri": "https://example.com/bin/tool",
                                                                 "executable": True, "outputFile": "t"}],
        "executorData": {
            "cmd": "./run", "extraCmdLineArgs": ["--port", "$PORT0"], "successfulExitCodes": [0, 1],
            "maxOpenFiles": 1024, "logrotateFrequency": "HOURLY", "sigKillProcessesAfterMillis": 2500,
            "s3Artifacts": [{"name": "cfg", "s3Bucket": "b", "s3ObjectKey": "k/cfg.zip", "filename": "cfg.zip"}],
        },
    }
    info = attach_payload({"task_id": {"value": "web-v2-1-0-h-r"}, "name": "web", "command": {"value": ""}},
                          task_payload(deploy))
    spec = TaskSpec.from_task_info(info)
    assert (spec.request_id, spec.deploy_id, spec.user) == ("web", "v2", "app")
    override = task_payload(deploy, {"pendingTaskId": {}, "runAsUserOverride": "ops"})
    assert override["user"] == "ops"
    assert spec.command == "./run --port '$PORT0'"
    assert spec.successful_exit_codes == frozenset({0, 1})
    assert (spec.max_open_files, spec.rotate_frequency, spec.kill_grace_seconds) == (1024, "HOURLY", 2.5)
    app, tool, cfg = spec.artifacts
    assert (app.filename, app.extract, app.executable) == ("app.tar.gz", True, False)
    assert (tool.filename, tool.extract, tool.executable) == ("t", False, True)
    assert (cfg.url, cfg.extract) == ("s3://b/k/cfg.zip", True)


def test_custom_executor_task_info_carries_the_command() -> None:
    info = deploy_task("t1", "echo hi", env={"A": "1"}, executor_command="sing executor")
    assert "command" not in info and info["executor"]["executor_id"] == {"value": "t1"}
    spec = TaskSpec.from_task_info(info)
    assert spec.command == "echo hi" and spec.env["A"] == "1"


@pytest.mark.parametrize(("deploy", "message"), [
    ({"executorData": {"externalArtifacts": [{"name": "x", "url": "ftp://h/x", "filename": "x"}]}},
     "unsupported URL scheme 'ftp'"),
    ({"executorData": {"externalArtifacts": [{"name": "x", "url": "http://h/x", "filename": "../x"}]}},
     "must be a plain file name"),
    ({"executorData": {"externalArtifacts": [{"name": "x", "url": "http://h/x", "filename": "x",
                                              "targetFolderRelativeToTask": "../../etc"}]}},
     "must stay inside the task directory"),
    ({"executorData": {"externalArtifacts": [{"name": "x", "url": "http://h/x", "filename": "x",
                                              "md5sum": "nothex"}]}}, "is not 32 hex digits"),
    ({"executorData": {"successfulExitCodes": "0"}}, "successfulExitCodes must be a list"),
    ({"executorData": {"logrotateFrequency": "HOURLYISH"}}, "logrotateFrequency must be one of"),
])
def test_bad_deploys_are_refused(deploy: dict, message: str) -> None:
    with pytest.raises(PayloadError, match=message):
        info = attach_payload({"task_id": {"value": "t"}, "command": {"value": "true"}},
                              task_payload({"requestId": "r", "id": "d", **deploy}))
        TaskSpec.from_task_info(info)
