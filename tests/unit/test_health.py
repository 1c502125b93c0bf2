from __future__ import annotations

from sing_backend.models.deploy import HealthcheckOptions
from sing_backend.scheduler.health import (
    CheckResult,
    Health,
    HealthState,
    apply_result,
    check_startup_overdue,
    first_check_at,
)

OPTS = HealthcheckOptions(uri="/h", startupDelaySeconds=1, startupTimeoutSeconds=10, startupIntervalSeconds=2,
                          intervalSeconds=5, maxRetries=2, failureStatusCodes=[404])


def state() -> HealthState:
    return HealthState(running_since=0, next_check_at=first_check_at(OPTS, 0))


def test_first_check_waits_for_startup_delay():
    assert first_check_at(OPTS, 1000) == 2000


def test_refused_during_startup_retries_at_startup_interval():
    s = apply_result(OPTS, state(), CheckResult(1000, refused=True, startup=True))
    assert s.status == Health.STARTING and s.next_check_at == 3000 and s.attempts == 0


def test_refused_after_startup_window_fails():
    s = apply_result(OPTS, state(), CheckResult(11_500, refused=True))
    assert s.status == Health.FAILED and "startupTimeoutSeconds" in (s.reason or "")


def test_startup_overdue_between_checks():
    s = state()
    s.results.append(CheckResult(1000, refused=True))
    assert check_startup_overdue(OPTS, s, 10_999).status == Health.STARTING
    assert check_startup_overdue(OPTS, s, 11_000).status == Health.FAILED


def test_2xx_passes():
    s = apply_result(OPTS, state(), CheckResult(1000, status_code=204))
    assert s.status == Health.HEALTHY and s.next_check_at == 0


def test_failure_status_code_fails_at_once():
    s = apply_result(OPTS, state(), CheckResult(1000, status_code=404))
    assert s.status == Health.FAILED and "404" in (s.reason or "")


def test_other_codes_retry_max_retries_times():
    s = state()
    for i, t in enumerate((1000, 6000)):
        s = apply_result(OPTS, s, CheckResult(t, status_code=500))
        assert s.status == Health.STARTING and s.attempts == i + 1 and s.next_check_at == t + 5000
    s = apply_result(OPTS, s, CheckResult(11_000, status_code=500))
    assert s.status == Health.FAILED and "3 time(s)" in (s.reason or "")


def test_liveness_replaces_after_threshold():
    opts = OPTS.model_copy(update={"livenessIntervalSeconds": 2, "livenessFailureThreshold": 2})
    s = apply_result(opts, state(), CheckResult(1000, status_code=200))
    assert s.status == Health.HEALTHY and s.next_check_at == 3000
    s = apply_result(opts, s, CheckResult(3000, error="timeout"))
    assert s.status == Health.HEALTHY and s.liveness_failures == 1
    s = apply_result(opts, s, CheckResult(5000, status_code=200))
    assert s.liveness_failures == 0
    s = apply_result(opts, s, CheckResult(7000, status_code=503))
    s = apply_result(opts, s, CheckResult(9000, status_code=503))
    assert s.status == Health.FAILED and "liveness" in (s.reason or "")
