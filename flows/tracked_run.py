"""One flow run, one MLflow run: what `simpo-retrain` and `simpo-sweep` do around their steps."""

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prefect import get_run_logger
from prefect.runtime import flow_run

from flows.params import RetrainParams
from simpo_core.errors import ConfigError
from tasks.helpers.tracking import Tracking, resolve_tracking_uri
from tasks.mlflow_run import end_tracking_run, start_tracking_run

Steps = Callable[[Path, Tracking], dict[str, Any]]


def run_tracked(params: RetrainParams, flow_name: str, logged_params: dict[str, Any], steps: Steps) -> dict[str, Any]:
    """Open the MLflow run of this flow run, run `steps(run_dir, tracking)` in it, close it
    FINISHED (or FAILED, re-raising), and add where everything went to the summary.

    `run_dir` is `output_dir/<flow run id>`; a retried flow run reuses its MLflow run.
    """
    started = time.perf_counter()
    flow_run_id = str(flow_run.get_id() or "local")
    run_dir = run_folder(params.output_dir, flow_run_id)
    uri = resolve_tracking_uri(params.registry.tracking_uri)
    run_name = flow_run.get_name() or flow_name
    tracking = Tracking(
        uri, start_tracking_run(uri, params.registry.experiment_name, run_name, flow_run_id, logged_params)
    )
    try:
        summary = steps(run_dir, tracking)
    except BaseException:
        end_tracking_run(tracking, "FAILED")
        raise
    end_tracking_run(tracking, "FINISHED")
    summary.update(
        mlflow_run_id=tracking.run_id,
        flow_run_id=flow_run_id,
        run_dir=str(run_dir),
        wall_seconds=round(time.perf_counter() - started, 1),
    )
    get_run_logger().info("%s done in %.1f s", flow_name, summary["wall_seconds"])
    return summary


def run_folder(output_dir: str, name: str) -> Path:
    """`output_dir/name`, refusing a name that would land outside `output_dir`."""
    base = Path(output_dir).resolve()
    folder = (base / name).resolve()
    if folder.parent != base:
        raise ConfigError(f"run folder name {name!r} would escape output_dir {base}")
    return folder
