"""Retry policy shared by the tasks: retry what may pass next time, not what cannot."""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from prefect.cache_policies import NONE

from simpo_core.errors import SimpoError
from tasks.helpers.tracking import redact


def retry_unless_user_error(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect `retry_condition_fn`: a SimpoError (bad data or config, divergence) fails at once.

    Such errors repeat identically on every attempt; retrying only delays the message that
    says what to fix. Anything else (I/O, a killed process) is retried.
    """
    error = state.data if isinstance(state.data, BaseException) else None
    return not isinstance(error, SimpoError)


# Task options. Inputs (frames, configs) are not hashable for caching, so no cache policy.
# I/O tasks (tracking server, storage, hub) back off 2 s, then 10 s, then 30 s.
IO_TASK = {
    "retries": 3,
    "retry_delay_seconds": [2, 10, 30],
    "retry_condition_fn": retry_unless_user_error,
    "cache_policy": NONE,
}
# Compute tasks retry once: training resumes from its newest checkpoint.
COMPUTE_TASK = {
    "retries": 1,
    "retry_delay_seconds": 5,
    "retry_condition_fn": retry_unless_user_error,
    "cache_policy": NONE,
}
# Pure data steps: a failure is the data's, and repeats.
ONE_SHOT_TASK = {"retries": 0, "cache_policy": NONE}


class TrackingUnavailableError(RuntimeError):
    """The MLflow tracking server could not be reached (retried with backoff)."""


_CONNECTION_SIGNS = (
    "max retries exceeded",
    "connection refused",
    "failed to establish",
    "connectionerror",
    "timed out",
)


@contextmanager
def tracking_errors(tracking_uri: str, doing: str) -> Iterator[None]:
    """Turn an unreachable tracking server into one clear, retryable error."""
    try:
        yield
    except Exception as error:
        text = f"{type(error).__name__}: {error}".lower()
        if any(sign in text for sign in _CONNECTION_SIGNS):
            raise TrackingUnavailableError(
                f"MLflow tracking server at {redact(tracking_uri)} is unreachable while {doing}. Start it "
                "(or fix registry.tracking_uri / MLFLOW_TRACKING_URI) and rerun the flow: registration is "
                "idempotent, so a rerun never creates a second version."
            ) from error
        raise
