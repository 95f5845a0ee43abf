"""The `simpo-refresh-serving` flow: stage the champion where the model server reads it.

Its deployment (`refresh-serving` in deployments/prefect.yaml) has a trigger on the event
`simpo.champion.moved`, which `promote-model` and `simpo rollback` emit when they move the
alias: serving follows the champion without anyone polling the registry.
"""

from typing import Any

from prefect import flow

from tasks.helpers.tracking import resolve_tracking_uri
from tasks.staging import stage_champion_task


@flow(name="simpo-refresh-serving", log_prints=True, timeout_seconds=2 * 3600)
def refresh_serving(
    registered_model_name: str = "simpo-policy",
    version: str | None = None,
    serving_dir: str = "serving",
    tracking_uri: str | None = None,
) -> dict[str, Any]:
    """Stage the current champion of `registered_model_name` under `serving_dir`.

    `version` is the version the triggering event announced (logged when the alias has
    moved on since); `tracking_uri` defaults to MLFLOW_TRACKING_URI, as for the retraining.
    """
    return stage_champion_task(registered_model_name, serving_dir, resolve_tracking_uri(tracking_uri), version)
