"""Health-check decisions: when to check a task next, and whether it is healthy, failed or still starting.

Pure functions over the deploy's options and the results so far; the checker in `healthchecker` does
the HTTP. Semantics follow Singularity (startup window where refused connections do not count, then
`maxRetries` further attempts, `failureStatusCodes` fail at once), plus Sing's continuous liveness
checks once a task is healthy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from ..models.deploy import HealthcheckOptions

DEFAULT_STARTUP_TIMEOUT_S = 45
DEFAULT_STARTUP_INTERVAL_S = 2
DEFAULT_INTERVAL_S = 5
DEFAULT_RESPONSE_TIMEOUT_S = 5
DEFAULT_LIVENESS_THRESHOLD = 3
BODY_BYTES_KEPT = 8 * 1024


class Health(StrEnum):
    STARTING = "STARTING"  # no verdict yet
    HEALTHY = "HEALTHY"
    FAILED = "FAILED"


@dataclass(frozen=True, slots=True)
class CheckResult:
    timestamp: int
    status_code: int | None = None
    duration_ms: int | None = None
    body: str | None = None
    error: str | None = None
    refused: bool = False  # nothing listening yet: does not count during startup
    startup: bool = False

    def wire(self, task_id: dict) -> dict:
        out: dict = {"taskId": task_id, "timestamp": self.timestamp, "startup": self.startup}
        if self.status_code is not None:
            out["statusCode"] = self.status_code
        if self.duration_ms is not None:
            out["durationMillis"] = self.duration_ms
        if self.body:
            out["responseBody"] = self.body
        if self.error:
            out["errorMessage"] = self.error
        return out


@dataclass(slots=True)
class HealthState:
    """What the checker knows of one task."""

    running_since: int
    status: Health = Health.STARTING
    attempts: int = 0  # counted (non-startup) failures before a verdict
    liveness_failures: int = 0
    next_check_at: int = 0
    reason: str | None = None
    results: list[CheckResult] = field(default_factory=list)


def first_check_at(opts: HealthcheckOptions, running_since: int) -> int:
    return running_since + (opts.startupDelaySeconds or 0) * 1000


def startup_deadline(opts: HealthcheckOptions, running_since: int) -> int:
    timeout = opts.startupTimeoutSeconds if opts.startupTimeoutSeconds is not None else DEFAULT_STARTUP_TIMEOUT_S
    return first_check_at(opts, running_since) + timeout * 1000


def response_timeout_s(opts: HealthcheckOptions) -> float:
    return float(opts.responseTimeoutSeconds if opts.responseTimeoutSeconds is not None
                 else DEFAULT_RESPONSE_TIMEOUT_S)


def _interval_ms(opts: HealthcheckOptions) -> int:
    return (opts.intervalSeconds if opts.intervalSeconds is not None else DEFAULT_INTERVAL_S) * 1000


def _passed(opts: HealthcheckOptions, result: CheckResult) -> bool:
    return result.status_code is not None and 200 <= result.status_code < 300 and result.error is None


def apply_result(opts: HealthcheckOptions, state: HealthState, result: CheckResult) -> HealthState:
    """Fold one check result into the task's health state and plan the next check."""
    state.results.append(result)
    now = result.timestamp
    if state.status == Health.HEALTHY:
        return _apply_liveness(opts, state, result)
    if _passed(opts, result):
        state.status = Health.HEALTHY
        state.reason = None
        state.next_check_at = now + liveness_interval_ms(opts) if liveness_interval_ms(opts) else 0
        return state
    in_startup = now < startup_deadline(opts, state.running_since)
    if result.refused and in_startup:
        state.next_check_at = now + (opts.startupIntervalSeconds if opts.startupIntervalSeconds is not None
                                     else DEFAULT_STARTUP_INTERVAL_S) * 1000
        return state
    if result.status_code is not None and result.status_code in (opts.failureStatusCodes or []):
        return _fail(state, f"health check returned {result.status_code}, a failure status code")
    if result.refused:
        timeout = (startup_deadline(opts, state.running_since) - first_check_at(opts, state.running_since)) // 1000
        return _fail(state, f"nothing answered the health check within startupTimeoutSeconds ({timeout} s)")
    state.attempts += 1
    if state.attempts > (opts.maxRetries or 0):
        what = f"status {result.status_code}" if result.status_code is not None else (result.error or "an error")
        return _fail(state, f"health check failed {state.attempts} time(s), last with {what}")
    state.next_check_at = now + _interval_ms(opts)
    return state


def check_startup_overdue(opts: HealthcheckOptions, state: HealthState, now: int) -> HealthState:
    """A task that never answered by the end of its startup window has failed, even between checks."""
    if state.status == Health.STARTING and state.attempts == 0 and now >= startup_deadline(opts, state.running_since) \
            and all(r.refused for r in state.results):
        timeout = (startup_deadline(opts, state.running_since) - first_check_at(opts, state.running_since)) // 1000
        return _fail(state, f"nothing answered the health check within startupTimeoutSeconds ({timeout} s)")
    return state


def liveness_interval_ms(opts: HealthcheckOptions) -> int:
    return (opts.livenessIntervalSeconds or 0) * 1000


def _apply_liveness(opts: HealthcheckOptions, state: HealthState, result: CheckResult) -> HealthState:
    threshold = opts.livenessFailureThreshold or DEFAULT_LIVENESS_THRESHOLD
    if _passed(opts, result):
        state.liveness_failures = 0
    else:
        state.liveness_failures += 1
        if state.liveness_failures >= threshold:
            what = f"status {result.status_code}" if result.status_code is not None else (result.error or "error")
            return _fail(state, f"liveness check failed {state.liveness_failures} times in a row, last with {what}")
    state.next_check_at = result.timestamp + liveness_interval_ms(opts)
    return state


def _fail(state: HealthState, reason: str) -> HealthState:
    state.status = Health.FAILED
    state.reason = reason
    state.next_check_at = 0
    return state
