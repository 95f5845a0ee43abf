"""The `--json` summary of a failed command: one JSON object, last on stdout, like a success.

`{"ok": false, "error": "...", "failed_step": "...", ...}` plus what was done before the
failure (the validation counts, the MLflow and Prefect run ids, ...). The code that knows a
detail records it on the exception as it passes by (`record_failure`, `step`); `flows.cli`
prints the summary (`failure_summary`), so every command reports failures the same way.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

FAILURE_ATTR = "simpo_failure"  # the details recorded on an exception on its way out


def record_failure(exception: BaseException, /, **details: Any) -> None:
    """Attach `details` to `exception` for the failure summary (`error` overrides its text).

    Details recorded first (closest to the failure) win: an outer `step` does not rename
    the step a flow reported.
    """
    known = getattr(exception, FAILURE_ATTR, None) or {}
    try:
        setattr(exception, FAILURE_ATTR, {**details, **known})
    except AttributeError:  # an exception type without attributes: the summary says less
        pass


@contextmanager
def step(name: str, **details: Any) -> Iterator[None]:
    """Name the step a failure inside the block happened in (with what is known so far)."""
    try:
        yield
    except Exception as error:
        record_failure(error, failed_step=name, **details)
        raise


def describe_error(error: BaseException) -> str:
    """`ExceptionType: message`, as the failure alerts and MLflow tags write it, secrets hidden."""
    from tasks.helpers.tracking import redact

    message = str(error)
    return redact(f"{type(error).__name__}: {message}" if message else type(error).__name__)


def failure_summary(error: BaseException, command: str) -> dict[str, Any]:
    """The `--json` object of a failed command: ok false, the error, the failed step, the details.

    The step is the command's name when nothing more precise was recorded.
    """
    summary: dict[str, Any] = {"ok": False, "error": describe_error(error), "failed_step": command}
    summary.update(getattr(error, FAILURE_ATTR, None) or {})
    return summary
