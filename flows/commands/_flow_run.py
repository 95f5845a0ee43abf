"""Run a Prefect flow from a command: its summary, or its error with where the run failed.

A failed flow run re-raises its own error (so the message and exit code stay those of the
error), carrying for the `--json` failure summary what the flow's failure hook reports
(`flows.alerts.summarize_failure`: the failed step, the run ids and links) and what was
done before: the steps that finished and the validation and audit figures the run logged.
"""

import logging
from pathlib import Path
from typing import Any

from flows.commands._failure import record_failure

logger = logging.getLogger(__name__)


class FlowRunFailed(RuntimeError):
    """A flow run that ended without raising an error of its own (cancelled, crashed)."""


def run_flow(flow: Any, params: Any, **parameters: Any) -> dict[str, Any]:
    """Run `flow(params=params, **parameters)` in this process and return its summary.

    Raises:
        The flow run's own error, with the failure details recorded on it.
    """
    state = flow(params=params, return_state=True, **parameters)
    if state.is_completed():
        return state.result()
    error = state.result(raise_on_failure=False)
    if not isinstance(error, BaseException):
        error = FlowRunFailed(f"flow run ended {state.name}: {state.message or 'no error recorded'}")
    try:
        details = failure_details(state, params, error)
    except Exception as lookup_error:  # the summary may say less; it must not hide the failure
        logger.warning("could not collect the failure details: %s", lookup_error)
        details = {"flow_run_id": str(state.state_details.flow_run_id)}
    record_failure(error, **details)
    raise error


def failure_details(state: Any, params: Any, error: BaseException) -> dict[str, Any]:
    """The failed step, error and run links as the failure hook reports them, and what was done."""
    from prefect.client.orchestration import get_client

    from flows.alerts import BOOKKEEPING_TASKS, summarize_failure

    raw_params = params.model_dump(mode="json")
    with get_client(sync_client=True) as client:
        flow_run = client.read_flow_run(state.state_details.flow_run_id)
        task_runs = client.read_task_runs(flow_run_filter=_of_flow_run(flow_run.id))
    failure = summarize_failure(flow_run, state, raw_params)
    names = {run.name: task_name(run) for run in task_runs}
    finished = sorted(
        (
            run
            for run in task_runs
            if run.state and run.state.is_completed() and names[run.name] not in BOOKKEEPING_TASKS
        ),
        key=_started,
    )
    details: dict[str, Any] = {
        "failed_step": names.get(failure.step, failure.step),
        "error": failure.error,
        "completed_steps": [names[run.name] for run in finished],
        "flow_run_id": failure.flow_run_id,
        "flow_run_name": failure.flow_run_name,
        "mlflow_run_id": failure.mlflow_run_id,
    }
    details.update({key: value for key, value in _links(failure).items() if value})
    details.update(_logged_figures(raw_params, failure.mlflow_run_id))
    if getattr(error, "summary", None) is not None:  # the validation step's report, carried by its error
        details["validation"] = error.summary
    run_dir = Path(params.output_dir).resolve() / failure.flow_run_id
    if run_dir.is_dir():
        details["run_dir"] = str(run_dir)
    return details


def task_name(task_run: Any) -> str:
    """The task's name (`validate-preferences`) of one of its runs (`validate-preferences-0`)."""
    key = task_run.dynamic_key or ""
    for suffix in (key, key[:3]):
        if suffix and task_run.name.endswith(f"-{suffix}"):
            return task_run.name[: -len(suffix) - 1]
    return task_run.name


def _logged_figures(raw_params: dict[str, Any], mlflow_run_id: str | None) -> dict[str, Any]:
    """The validation and audit figures the run logged to MLflow before it failed."""
    if mlflow_run_id is None:
        return {}
    from tasks.helpers.tracking import get_client, resolve_tracking_uri

    tracking_uri = resolve_tracking_uri((raw_params.get("registry") or {}).get("tracking_uri"))
    metrics = get_client(tracking_uri).get_run(mlflow_run_id).data.metrics
    figures: dict[str, Any] = {}
    for group, prefix in (("validation", "data/"), ("audit", "audit/")):
        values = {key.removeprefix(prefix): value for key, value in metrics.items() if key.startswith(prefix)}
        if group == "validation":  # row counts, logged as MLflow's floats
            values = {key: int(value) for key, value in values.items()}
        if values:
            figures[group] = values
    return figures


def _links(failure: Any) -> dict[str, Any]:
    return {"flow_run_url": failure.flow_run_url, "mlflow_run_url": failure.mlflow_run_url}


def _of_flow_run(flow_run_id: Any) -> Any:
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    return FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))


def _started(task_run: Any) -> Any:
    return task_run.start_time or task_run.expected_start_time or task_run.created
