"""Retention: a backend purges finished tasks beyond the newest N per request from its history, on its
own, every history_purge_interval_seconds."""

from __future__ import annotations

from pathlib import Path

from sing_backend.local_backend import Backend, wait_for


def test_finished_tasks_beyond_the_newest_n_are_purged(tmp_path: Path) -> None:
    backend = Backend(tmp_path / "data", env={"SING_HISTORY_KEEP_PER_REQUEST": "2",
                                              "SING_HISTORY_PURGE_INTERVAL_SECONDS": "1"}).start()
    try:
        backend.create({"id": "job", "requestType": "ON_DEMAND"},
                       {"id": "v1", "command": "true", "resources": {"cpus": 0.05, "memoryMb": 16}})
        wait_for(lambda: backend.get("/api/requests/request/job")["requestDeployState"].get("activeDeploy"),
                 what="the deploy active")
        finished = []
        for n in range(4):
            run_id = backend.post("/api/requests/request/job/run", {"runId": f"run-{n}"})["pendingRequest"]["runId"]
            task = wait_for(lambda r=run_id: (t := backend.get(f"/api/history/request/job/run/{r}"))
                            .get("lastTaskStatus") == "TASK_FINISHED" and t, what=f"{run_id} finished")
            finished.append(task["taskId"]["id"])
        # The newest two stay (by last update); the older ones go at the next purge.
        wait_for(lambda: [t["taskId"]["id"] for t in backend.get("/api/history/request/job/tasks")]
                 == finished[:1:-1], timeout=20, what="the two newest kept, the others purged")
        assert backend.client.get(f"/api/history/task/{finished[0]}").status_code == 404
    finally:
        backend.close()
