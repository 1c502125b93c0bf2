from __future__ import annotations

import pytest
from pydantic import ValidationError

from sing_backend.ids import PendingTaskId, TaskId
from sing_backend.models.deploy import SingularityDeploy
from sing_backend.models.request import SingularityRequest


def test_task_id_round_trip_with_hyphenated_request():
    tid = TaskId("billing-api", "v42_7f3c1a", 1668775261234, 2, "127.0.0.2", "127_0_0_2", "us-east", "us_east")
    assert tid.id == "billing-api-v42_7f3c1a-1668775261234-2-127_0_0_2-us_east"
    parsed = TaskId.parse(tid.id)
    assert parsed.requestId == "billing-api" and parsed.instanceNo == 2 and parsed.startedAt == 1668775261234


def test_pending_task_id_format():
    pid = PendingTaskId("job", "v1", 10, 1, "ONEOFF", 9)
    assert pid.id == "job-v1-10-1-ONEOFF-9"


@pytest.mark.parametrize(("body", "fragment"), [
    ({"id": "bad id", "requestType": "SERVICE"}, "id"),
    ({"id": "a", "requestType": "NOPE"}, "requestType"),
    ({"id": "a", "requestType": "SERVICE", "instances": 0}, "instances"),
    ({"id": "a", "requestType": "SCHEDULED"}, "schedule"),
    ({"id": "a", "requestType": "WORKER", "loadBalanced": True}, "loadBalanced"),
    ({"id": "a", "requestType": "SERVICE", "numRetriesOnFailure": 2}, "numRetriesOnFailure"),
    ({"id": "a", "requestType": "SERVICE", "instances": "many"}, "instances"),
    ({"id": "a", "requestType": "SCHEDULED", "schedule": "* * 32 * *"}, "schedule: day-of-month '32'"),
    ({"id": "a", "requestType": "SCHEDULED", "schedule": "61 * * * *"}, "schedule: minute '61'"),
    ({"id": "a", "requestType": "SCHEDULED", "schedule": "* * *"}, "expected 5 fields"),
    ({"id": "a", "requestType": "SCHEDULED", "quartzSchedule": "0 0 2 ? * 9"}, "day-of-week"),
    ({"id": "a", "requestType": "SCHEDULED", "schedule": "0 2 * * *", "scheduleTimeZone": "Mars/Base"},
     "scheduleTimeZone"),
    ({"id": "a", "requestType": "SERVICE", "schedule": "0 2 * * *"}, "only SCHEDULED"),
])
def test_invalid_requests_name_the_field(body, fragment):
    with pytest.raises(ValidationError) as exc:
        SingularityRequest.model_validate(body)
    assert fragment in str(exc.value)


def test_request_accepts_legacy_slave_placement_and_omits_absent_fields():
    req = SingularityRequest.model_validate({"id": "a", "requestType": "SERVICE", "slavePlacement": "SEPARATE"})
    assert req.wire() == {"id": "a", "requestType": "SERVICE", "agentPlacement": "SEPARATE"}


def test_deploy_id_rejects_hyphen_and_needs_command():
    with pytest.raises(ValidationError, match="id"):
        SingularityDeploy.model_validate({"requestId": "a", "id": "v-1", "command": "true"})
    with pytest.raises(ValidationError, match="command"):
        SingularityDeploy.model_validate({"requestId": "a", "id": "v1"})


def test_shell_defaults_follow_singularity():
    assert SingularityDeploy.model_validate({"requestId": "a", "id": "v1", "command": "x"}).uses_shell
    d = SingularityDeploy.model_validate({"requestId": "a", "id": "v1", "command": "x", "arguments": ["y"]})
    assert not d.uses_shell


@pytest.mark.parametrize("schedule", ["*/5 * * * *", "0 30 2 * * ?", "0 0 12 ? * MON-FRI", "0 15 10 L * ?",
                                      "0 0 0 ? * 6#3", "0 0 0 15W * ?", "0 0/5 * * * ? 2027"])
def test_valid_schedules_are_accepted(schedule):
    req = SingularityRequest.model_validate({"id": "a", "requestType": "SCHEDULED", "schedule": schedule,
                                             "scheduleTimeZone": "America/New_York"})
    assert req.schedule == schedule
