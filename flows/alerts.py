"""Failure alerts of the `simpo-retrain` flow: Prefect state hooks.

When a flow run fails or crashes, `alert_on_failure` writes one failure summary (the failed
step, the redacted error, links to the Prefect flow run and the MLflow run) to three places:
a Markdown artifact `simpo-failure` on the flow run, the tags `failure.*` on the flow run's
MLflow run, and, when `alerts.block` names one, a Prefect notification block (Slack, a
generic webhook, ...). `check_alert_block` runs when the flow starts, so a block name that
does not load is reported at once rather than at the first failure.

Hooks never raise: Prefect logs a hook's exception and moves on, and an alert that fails
must not hide the failure it reports. Each destination is tried on its own.
"""

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from prefect.exceptions import MissingContextError
from prefect.logging import get_logger, get_run_logger

from tasks.helpers.tracking import redact

ARTIFACT_KEY = "simpo-failure"
# MLflow limits tag values to 8000 characters; the error is cut well below that.
MAX_ERROR_CHARS = 2000
# Bookkeeping tasks that run after a failure (closing the MLflow run) are not "the step".
BOOKKEEPING_TASKS = ("end-tracking",)


def _logger() -> Any:
    """The flow run's logger (its lines show in the Prefect UI), or a plain one outside a run."""
    try:
        return get_run_logger()
    except MissingContextError:
        return get_logger("simpo.alerts")


@dataclass
class FailureSummary:
    """What failed, where, and where to look."""

    flow_run_id: str
    flow_run_name: str
    state: str
    step: str
    error: str
    flow_run_url: str | None = None
    mlflow_run_id: str | None = None
    mlflow_run_url: str | None = None

    @property
    def subject(self) -> str:
        return f"simpo-retrain {self.flow_run_name} {self.state.lower()} in {self.step}"

    def markdown(self) -> str:
        """The summary as Markdown: the artifact, the MLflow tag and the notification body."""
        lines = [
            f"# {self.subject}",
            "",
            f"- **step**: `{self.step}`",
            f"- **state**: {self.state}",
            f"- **flow run**: {self.flow_run_name} (`{self.flow_run_id}`)" + _link(self.flow_run_url),
            f"- **MLflow run**: `{self.mlflow_run_id or 'not started'}`" + _link(self.mlflow_run_url),
            "",
            "```",
            self.error,
            "```",
        ]
        return "\n".join(lines)


def alert_on_failure(flow: Any, flow_run: Any, state: Any) -> None:
    """`on_failure` / `on_crashed` hook: write the failure summary everywhere it belongs."""
    params = _raw_params(flow_run)
    summary = summarize_failure(flow_run, state, params)
    _logger().error("%s: %s", summary.subject, summary.error.splitlines()[0] if summary.error else "")
    block = (params.get("alerts") or {}).get("block")
    for name, action in (
        ("notification", lambda: notify(block, summary) if block else None),
        ("artifact", lambda: publish_artifact(flow_run.id, summary)),
        ("MLflow tags", lambda: tag_mlflow_run(params, summary)),
    ):
        try:
            action()
        except Exception as error:  # one broken destination must not stop the others
            _logger().error("failure alert: could not write the %s: %s", name, redact(str(error)))


def check_alert_block(flow: Any, flow_run: Any, state: Any) -> None:
    """`on_running` hook: say now, not at the first failure, that `alerts.block` does not load."""
    block = (_raw_params(flow_run).get("alerts") or {}).get("block")
    if not block:
        return
    try:
        load_block(block)
    except Exception as error:
        _logger().error(
            "alerts.block %r cannot be loaded (%s): failures of this run will not be notified; "
            "create it (`prefect block create`, or `.save(name)` in Python) or fix the name",
            block,
            redact(str(error)),
        )


def summarize_failure(flow_run: Any, state: Any, params: dict[str, Any]) -> FailureSummary:
    """Collect the failed step, the error and the links of one failed flow run."""
    tracking_uri, mlflow_run = _find_mlflow_run(params, str(flow_run.id))
    return FailureSummary(
        flow_run_id=str(flow_run.id),
        flow_run_name=flow_run.name or str(flow_run.id),
        state=state.name or state.type.value,
        step=failed_step(flow_run.id),
        error=_error_text(state),
        flow_run_url=_flow_run_url(flow_run.id),
        mlflow_run_id=mlflow_run.info.run_id if mlflow_run else None,
        mlflow_run_url=_mlflow_run_url(tracking_uri, mlflow_run) if mlflow_run else None,
    )


def failed_step(flow_run_id: Any) -> str:
    """The name of the task run that failed last, or `flow` when the flow body failed itself."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterId,
        TaskRunFilter,
        TaskRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import TaskRunSort

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
            task_run_filter=TaskRunFilter(
                state_type=TaskRunFilterStateType(any_=[StateType.FAILED, StateType.CRASHED])
            ),
            sort=TaskRunSort.EXPECTED_START_TIME_DESC,
        )
    steps = [run.name for run in runs if not run.name.startswith(BOOKKEEPING_TASKS)]
    return steps[0] if steps else "flow"


def notify(block: str, summary: FailureSummary) -> None:
    """Send the summary through the Prefect notification block `type-slug/name`."""
    load_block(block).notify(body=summary.markdown(), subject=summary.subject)
    _logger().info("failure alert sent through %s", block)


def load_block(block: str) -> Any:
    """Load a saved notification block by its `type-slug/name` slug."""
    import prefect.blocks.notifications  # noqa: F401  (registers the notification block types)
    from prefect.blocks.core import Block
    from prefect.blocks.notifications import NotificationBlock

    loaded = Block.load(block)
    if not isinstance(loaded, NotificationBlock):
        raise TypeError(f"{block} is a {type(loaded).__name__}, not a notification block (Slack, webhook, ...)")
    return loaded


def publish_artifact(flow_run_id: Any, summary: FailureSummary) -> None:
    """The summary as the Markdown artifact `simpo-failure` of the flow run."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import ArtifactCreate

    with get_client(sync_client=True) as client:
        client.create_artifact(
            ArtifactCreate(
                key=ARTIFACT_KEY,
                type="markdown",
                description=summary.subject,
                data=summary.markdown(),
                flow_run_id=flow_run_id,
            )
        )


def tag_mlflow_run(params: dict[str, Any], summary: FailureSummary) -> None:
    """Tag the flow run's MLflow run with `failure.step`, `failure.error`, `failure.summary`."""
    if summary.mlflow_run_id is None:
        return  # the flow failed before it opened its MLflow run: nothing to tag
    from tasks.helpers.tracking import get_client, resolve_tracking_uri

    with _quick_mlflow_requests():
        client = get_client(resolve_tracking_uri(_registry(params).get("tracking_uri")))
        for key, value in {
            "failure.step": summary.step,
            "failure.error": summary.error,
            "failure.flow_run_url": summary.flow_run_url or "",
            "failure.summary": summary.markdown(),
        }.items():
            client.set_tag(summary.mlflow_run_id, key, value)


def _find_mlflow_run(params: dict[str, Any], flow_run_id: str) -> tuple[str | None, Any]:
    """The MLflow run this flow run opened (tag `flow_run_id`), or None when there is none yet."""
    from tasks.helpers.tracking import get_client, resolve_tracking_uri

    registry = _registry(params)
    try:
        with _quick_mlflow_requests():
            tracking_uri = resolve_tracking_uri(registry.get("tracking_uri"))
            client = get_client(tracking_uri)
            experiment = client.get_experiment_by_name(registry.get("experiment_name") or "simpo-retrain")
            if experiment is None:
                return tracking_uri, None
            runs = client.search_runs(
                [experiment.experiment_id], filter_string=f"tags.flow_run_id = '{flow_run_id}'", max_results=1
            )
    except Exception as error:  # the tracking server may be what failed
        _logger().warning("failure alert: MLflow run not found: %s", redact(str(error)))
        return None, None
    return tracking_uri, runs[0] if runs else None


def _error_text(state: Any) -> str:
    """`ExceptionType: message` of the failure, redacted and cut to a readable size."""
    error = None
    try:
        error = state.result(raise_on_failure=False)
    except Exception:  # a crashed run may have no readable result
        error = None
    if isinstance(error, BaseException):
        text = f"{type(error).__name__}: {error}"
    else:
        text = state.message or state.name or "unknown error"
    text = redact(text)
    return text if len(text) <= MAX_ERROR_CHARS else text[:MAX_ERROR_CHARS] + " ..."


def _flow_run_url(flow_run_id: Any) -> str | None:
    from prefect.settings import get_current_settings

    ui_url = get_current_settings().ui_url
    return f"{ui_url.rstrip('/')}/runs/flow-run/{flow_run_id}" if ui_url else None


def _mlflow_run_url(tracking_uri: str | None, run: Any) -> str | None:
    if not tracking_uri or not tracking_uri.startswith(("http://", "https://")):
        return None
    return redact(f"{tracking_uri.rstrip('/')}/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}")


def _raw_params(flow_run: Any) -> dict[str, Any]:
    """The flow run's `params` as a plain dict (not validated: a hook must work on any input)."""
    raw = (flow_run.parameters or {}).get("params") or {}
    if hasattr(raw, "model_dump"):
        raw = raw.model_dump(mode="json")
    return raw if isinstance(raw, dict) else {}


def _registry(params: dict[str, Any]) -> dict[str, Any]:
    registry = params.get("registry") or {}
    return registry if isinstance(registry, dict) else {}


def _link(url: str | None) -> str:
    return f" [open]({url})" if url else ""


@contextmanager
def _quick_mlflow_requests() -> Iterator[None]:
    """Fail fast when the tracking server is down (MLflow's default retries take minutes):
    the notification must not wait for a server that may be the cause of the failure."""
    quick = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_TIMEOUT": "15"}
    previous = {key: os.environ.get(key) for key in quick}
    os.environ.update({key: value for key, value in quick.items() if previous[key] is None})
    try:
        yield
    finally:
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
