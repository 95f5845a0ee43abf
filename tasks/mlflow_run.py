"""Open and close the one MLflow run that a flow run logs into."""

from typing import Any

import yaml
from prefect import get_run_logger, task

from tasks.helpers.retry import IO_TASK
from tasks.helpers.tracking import Tracking, ensure_experiment, flatten, get_client, log_params, redact


@task(name="start-tracking", timeout_seconds=120, **IO_TASK)
def start_tracking_run(
    tracking_uri: str, experiment_name: str, run_name: str, flow_run_id: str, params: dict[str, Any]
) -> str:
    """Create the MLflow run of this flow run, or reuse it when the flow is retried."""
    logger = get_run_logger()
    client = get_client(tracking_uri)
    experiment_id = ensure_experiment(client, experiment_name, tracking_uri)
    existing = client.search_runs([experiment_id], filter_string=f"tags.flow_run_id = '{flow_run_id}'")
    if existing:
        run_id = existing[0].info.run_id
        logger.info("reusing MLflow run %s of flow run %s", run_id, flow_run_id)
        return run_id
    run = client.create_run(
        experiment_id, run_name=run_name, tags={"flow_run_id": flow_run_id, "pipeline": "simpo-retrain"}
    )
    log_params(client, run.info.run_id, flatten(params))
    # The resolved parameters as one file, ready for `simpo run --config` (secrets redacted).
    resolved = yaml.safe_dump(params, sort_keys=False)
    client.log_text(run.info.run_id, redact(resolved), "config/resolved.yaml")
    logger.info("MLflow run %s in experiment %r at %s", run.info.run_id, experiment_name, redact(tracking_uri))
    return run.info.run_id


@task(name="end-tracking", timeout_seconds=60, **IO_TASK)
def end_tracking_run(tracking: Tracking, status: str) -> None:
    """Mark the MLflow run FINISHED or FAILED."""
    tracking.client().set_terminated(tracking.run_id, status=status)
