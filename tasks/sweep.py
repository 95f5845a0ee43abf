"""Tasks of the `simpo-sweep` flow: one MLflow child run per trial, and the sweep's results.

Training, evaluation, registration and promotion are the retraining flow's own tasks; these
only add what a sweep has more: the child runs under the sweep's parent run, and the results
table and plot on the parent.
"""

import csv
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_table_artifact

from tasks.helpers.retry import IO_TASK, tracking_errors
from tasks.helpers.tracking import Tracking, ensure_experiment, flatten, log_params

PARENT_TAG = "mlflow.parentRunId"  # MLflow nests a run under the run this tag names
TRIAL_TAG = "sweep.trial"


@task(name="start-trial-runs", timeout_seconds=300, **IO_TASK)
def start_trial_runs_task(parent: Tracking, experiment_name: str, trials: list[dict[str, Any]]) -> dict[str, str]:
    """Create one child run per trial (`{name, stage, settings, training}`) under the sweep's run,
    with the trial's settings and resolved training config as params; return name -> run id.

    Idempotent: a retry, or a retried flow run, finds the child runs it created before.
    """
    parent_run_id = parent.run_id
    with tracking_errors(parent.uri, "creating the trial runs"):
        client = parent.client()
        experiment_id = ensure_experiment(client, experiment_name, parent.uri)
        client.set_tag(parent_run_id, "pipeline", "simpo-sweep")
        existing = {
            run.data.tags[TRIAL_TAG]: run.info.run_id
            for run in client.search_runs([experiment_id], filter_string=f"tags.`{PARENT_TAG}` = '{parent_run_id}'")
            if TRIAL_TAG in run.data.tags
        }
        run_ids = {}
        for trial in trials:
            if trial["name"] in existing:
                run_ids[trial["name"]] = existing[trial["name"]]
                continue
            tags = {PARENT_TAG: parent_run_id, TRIAL_TAG: trial["name"], "sweep.stage": trial["stage"]}
            run = client.create_run(experiment_id, run_name=f"trial-{trial['name']}", tags=tags)
            params = {f"trial.{key}": value for key, value in trial["settings"].items()}
            params.update(flatten(trial["training"], "train."))
            log_params(client, run.info.run_id, params)
            run_ids[trial["name"]] = run.info.run_id
    get_run_logger().info("%d trial run(s) under MLflow run %s", len(run_ids), parent_run_id)
    return run_ids


@task(name="log-sweep-results", timeout_seconds=600, **IO_TASK)
def log_sweep_results_task(
    parent: Tracking,
    rows: list[dict[str, Any]],
    trial_runs: dict[str, str],
    failed: list[str],
    swept: list[str],
    metric: str,
    out_dir: Path,
) -> dict[str, str]:
    """Write the results table (CSV) and the plot (PNG) to `out_dir`, log both on the parent run,
    tag each trial's run with its verdict and end it (FAILED for the `failed` trials), publish
    the table as a Prefect artifact."""
    from simpo_core.sweep.selection import plot_sweep

    out_dir.mkdir(parents=True, exist_ok=True)
    table = out_dir / "sweep_results.csv"
    with table.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]) if rows else ["trial"])
        writer.writeheader()
        writer.writerows(rows)
    plot = plot_sweep(rows, swept, metric, out_dir / "sweep_metrics.png")
    with tracking_errors(parent.uri, "logging the sweep's results"):
        client = parent.client()
        for path in (table, plot):
            client.log_artifact(parent.run_id, str(path), "sweep")
        for row in rows:
            run_id = trial_runs.get(row["trial"])
            if run_id is not None:
                verdict = "winner" if row["winner"] else row["disqualified"] or "eligible, not the best"
                client.set_tag(run_id, "sweep.verdict", verdict[:5000])
                client.set_terminated(run_id, status="FAILED" if row["trial"] in failed else "FINISHED")
    create_table_artifact(rows, key="sweep-results", description=f"sweep trials, ranked by held-out {metric}")
    return {"results_table": str(table), "plot": str(plot)}
