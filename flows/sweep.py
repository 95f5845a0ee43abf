"""The `simpo-sweep` flow: prepare the data once, train and evaluate one trial per setting on a
task runner, pick the winner on the held-out pairs, register it and let the gate decide.

    validate → audit → split                       (once, as in `simpo-retrain`)
    for each stage: trials → train-trial-<settings> → evaluate-trial-<settings>   (concurrently)
    winner → register-model → promote-model        (as in `simpo-retrain`)
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.futures import as_completed

from flows.alerts import alert_on_failure, check_alert_block
from flows.data_steps import data_steps
from flows.model_steps import (
    TrainingRun,
    decision_lock,
    gate_version,
    register_and_gate,
    training_config,
    training_folder,
    training_job,
)
from flows.params import RetrainParams, check_sources
from flows.retrain import data_settings, retrain_run_name
from flows.tracked_run import run_tracked
from simpo_core.errors import ConfigError
from simpo_core.eval.settings import EvalSettings
from simpo_core.gate.identity import model_identity, resolved_training, training_identity
from simpo_core.gate.rerun import gate_identity
from simpo_core.sweep.placement import TrialPlacement, trial_placement
from simpo_core.sweep.plan import Stage, Trial, planned_stages, stage_trials
from simpo_core.sweep.selection import TrialOutcome, results_table, select_winner, trial_summary
from simpo_core.sweep.settings import SweepSettings
from simpo_core.train.training_folder import TrainResult
from tasks.evaluate import evaluate_holdout_task
from tasks.helpers.champion import current_champion
from tasks.helpers.tracking import Tracking
from tasks.identity import check_training_identity_task
from tasks.sweep import log_sweep_results_task, start_trial_runs_task
from tasks.train import train_simpo_task


@dataclass
class SweepContext:
    """What every trial shares: the parameters, the one split, where things are logged and written."""

    params: RetrainParams
    split: Any
    parent: Tracking  # the sweep's own MLflow run; each trial logs into a child run of it
    run_dir: Path
    data_fingerprint: str
    data_settings: dict[str, Any]
    model_id: str = ""
    placement: TrialPlacement | None = None  # how many trials at once, and the GPUs of each

    def __post_init__(self) -> None:
        self.model_id = model_identity(self.params.model.source)

    def identity(self, trial: Trial) -> str:
        """The trial's training identity: it names its training folder (resumable, reusable)."""
        model = self.params.model
        training = resolved_training(trial.config, model.device, model.quantization)
        return training_identity(self.data_fingerprint, self.data_settings, training, self.model_id)


def sweep_run_name() -> str:
    """Flow run name, e.g. `sweep-synthetic-on-tiny-0f3a`."""
    return f"sweep-{retrain_run_name()}"


@flow(
    name="simpo-sweep",
    flow_run_name=sweep_run_name,
    log_prints=True,
    timeout_seconds=7 * 24 * 3600,  # many trainings; each keeps its own task timeout
    on_running=[check_alert_block],
    on_failure=[alert_on_failure],
    on_crashed=[alert_on_failure],
)
def simpo_sweep(params: RetrainParams = RetrainParams(), sweep: SweepSettings = SweepSettings()) -> dict[str, Any]:
    """Try training settings on the same data, register the best trial as the challenger."""
    check_sources(params)
    if params.generate.prompts is not None:
        raise ConfigError(
            "simpo sweep trains on pairs that exist: run `simpo generate --prompts ...` first and sweep on its "
            "file (--data), or leave generate.prompts unset"
        )
    stages = planned_stages(sweep, training_config(params))  # a bad value fails before any work
    resolved = {**params.model_dump(mode="json"), "sweep": sweep.model_dump(mode="json")}
    summary = run_tracked(
        params, "simpo-sweep", resolved, lambda folder, parent: _sweep_steps(params, sweep, stages, folder, parent)
    )
    get_run_logger().info("%s", summary["winner_reason"])
    return summary


def _sweep_steps(
    params: RetrainParams, sweep: SweepSettings, stages: list[Stage], run_dir: Path, parent: Tracking
) -> dict[str, Any]:
    validated, audited, split = data_steps(params, run_dir, parent)
    settings = data_settings(params)
    context = SweepContext(params, split, parent, run_dir, validated.fingerprint, settings)
    outcomes, stages_run = _run_stages(sweep, stages, training_config(params), context)
    selection = select_winner(outcomes, sweep)
    rows = results_table(outcomes, selection)
    swept = list(dict.fromkeys(name for outcome in outcomes for name in outcome.trial.settings))
    runs = {outcome.trial.name: outcome.extra["mlflow_run_id"] for outcome in outcomes}
    failed = [outcome.trial.name for outcome in outcomes if outcome.error]
    files = log_sweep_results_task(parent, rows, runs, failed, swept, sweep.metric, run_dir / "sweep")
    winner = next((outcome for outcome in outcomes if outcome.trial.name == selection.winner), None)
    registry = _register_winner(winner, context, validated, audited)
    return {
        "validation": validated.summary,
        "audit": audited.report,
        "metric": sweep.metric,
        "stages": stages_run,
        "trials": [trial_summary(outcome, selection) for outcome in outcomes],
        "winner": trial_summary(winner, selection) if winner else None,
        "winner_reason": selection.reason,
        "registry": registry,
        "registered_model_name": registry["registered_model_name"],
        "model_version": registry["model_version"],
        "promoted": registry["promoted"],
        "promotion_reason": registry["promotion_reason"],
        **files,
    }


def _run_stages(
    sweep: SweepSettings, stages: list[Stage], base: Any, context: SweepContext
) -> tuple[list[TrialOutcome], list[dict[str, Any]]]:
    """Run the stages in order on one task runner; each stage starts from the best trial so far."""
    params = context.params
    outcomes: list[TrialOutcome] = []
    stages_run, best = [], {}
    context.placement = trial_placement(sweep, params.model.device, base.num_processes)
    with task_runner(sweep, context.placement) as runner:
        for stage in stages:
            trials = stage_trials(stage, best, base, [outcome.trial for outcome in outcomes])
            stages_run.append({"name": stage.name, "trials": [trial.name for trial in trials]})
            if not trials:  # every combination was trained by an earlier stage
                continue
            described = [
                {"name": t.name, "stage": t.stage, "settings": t.settings, "training": t.config.model_dump(mode="json")}
                for t in trials
            ]
            run_ids = start_trial_runs_task(context.parent, params.registry.experiment_name, described)
            outcomes += run_trials(runner, trials, run_ids, context.placement.concurrency, context)
            selection = select_winner(outcomes, sweep)
            if selection.winner is None:
                get_run_logger().warning("stopping after stage %r: %s", stage.name, selection.reason)
                break
            best = next(o.trial.settings for o in outcomes if o.trial.name == selection.winner)
    return outcomes, stages_run


def task_runner(sweep: SweepSettings, placement: TrialPlacement | None = None) -> Any:
    """`local`: a thread pool of `placement.concurrency` workers; `dask`: prefect-dask's runner on
    the scheduler at `dask_address`, or on a local cluster of that many one-thread worker
    processes, each seeing only its GPUs."""
    placement = placement or trial_placement(sweep, "auto", 1)
    if sweep.runner == "local":
        from prefect.task_runners import ThreadPoolTaskRunner

        return ThreadPoolTaskRunner(max_workers=placement.concurrency)
    from prefect_dask import DaskTaskRunner  # imported only here: the local path does not pay for it

    if sweep.dask_address:
        return DaskTaskRunner(address=sweep.dask_address)
    # One thread per worker: one trial per worker at a time. Scheduler on loopback, no dashboard.
    cluster = {"n_workers": placement.concurrency, "threads_per_worker": 1, "host": "127.0.0.1"}
    return DaskTaskRunner(cluster_kwargs={**cluster, "dashboard_address": None, **placement.cluster_options()})


def run_trials(
    runner: Any, trials: list[Trial], run_ids: dict[str, str], limit: int, context: SweepContext
) -> list[TrialOutcome]:
    """Train then evaluate each trial, at most `limit` trials in flight, each on its own GPUs
    (`context.placement`) until it is done; a failed trial is recorded with its error and the
    others go on."""
    queue, in_flight, done = list(trials), {}, {}
    while queue or in_flight:
        while queue and len(in_flight) < limit:
            trial = queue.pop(0)
            context.placement.acquire(trial.name)
            in_flight[_submit_training(runner, trial, run_ids[trial.name], context)] = (trial, None)
        future = next(as_completed(list(in_flight)))
        trial, trained = in_flight.pop(future)
        extra = {"mlflow_run_id": run_ids[trial.name], "identity": context.identity(trial)}
        try:
            value = future.result()
        except Exception as error:  # recorded on the trial: the sweep goes on without it
            context.placement.release(trial.name)
            get_run_logger().warning("trial %s failed: %s", trial.name, error)
            done[trial.name] = TrialOutcome(trial, error=f"{type(error).__name__}: {error}"[:500], extra=extra)
            continue
        if trained is None:
            in_flight[_submit_evaluation(runner, trial, value, run_ids[trial.name], context)] = (trial, value)
        else:
            context.placement.release(trial.name)
            extra.update(model_dir=str(trained.model_dir), steps=trained.steps, reused=trained.reused, heldout=value)
            done[trial.name] = TrialOutcome(trial, trained=value["trained"], extra=extra)
    return [done[trial.name] for trial in trials]


def _submit_training(runner: Any, trial: Trial, run_id: str, context: SweepContext) -> Any:
    params = context.params
    task = train_simpo_task.with_options(task_run_name=f"train-trial-{trial.name}")
    folder = training_folder(params.output_dir, context.identity(trial))
    job = training_job(params, trial.config, context.split, folder, context.placement.device_of(trial.name))
    arguments = {"job": job, "tracking": Tracking(context.parent.uri, run_id), "fresh": params.force}
    return runner.submit(task, arguments)


def _submit_evaluation(runner: Any, trial: Trial, trained: TrainResult, run_id: str, context: SweepContext):
    params = context.params
    task = evaluate_holdout_task.with_options(task_run_name=f"evaluate-trial-{trial.name}")
    arguments = {
        "base_source": params.model.source,
        "trained_dir": str(trained.model_dir),
        "heldout_path": context.split.heldout_path,
        "settings": _eval_settings(params, trial.config, context.placement.device_of(trial.name)),
        "out_dir": context.run_dir / "eval" / trial.name,
        "tracking": Tracking(context.parent.uri, run_id),
    }
    return runner.submit(task, arguments)


def _eval_settings(params: RetrainParams, config: Any, device: str | None = None) -> EvalSettings:
    model = params.model
    return EvalSettings.for_training(
        params.eval, config, device=device or model.device, trust_remote_code=model.trust_remote_code
    )


def _register_winner(
    winner: TrialOutcome | None, context: SweepContext, validated: Any, audited: Any
) -> dict[str, Any]:
    """Register the winner and run the gate, with the retraining flow's steps."""
    params = context.params
    name = params.registry.registered_model_name
    decision = {"registered_model_name": name, "model_version": None, "registered": False, "promoted": False}
    if winner is None:
        return {**decision, "promotion_reason": "nothing registered: no trial qualifies", "champion_version": None}
    run = TrainingRun(
        params,
        winner.extra["identity"],
        winner.trial.config,
        Tracking(context.parent.uri, winner.extra["mlflow_run_id"]),
        context.run_dir,
        validated,
        audited,
        context.split,
        links={"sweep_mlflow_run": context.parent.run_id},
    )
    heldout, model_dir = winner.extra["heldout"], winner.extra["model_dir"]
    with decision_lock(params.output_dir, run.identity):  # an overlapping run of this training: one version
        current_gate = gate_identity(run.eval_settings, run.gate)
        plan = check_training_identity_task(run.identity, name, run.tracking.uri, current_gate, params.force)
        if plan.action == "skip":  # this sweep ran before: its winner is registered and decided already
            champion = current_champion(run.tracking.client(), name)
            champion_version = str(champion.version) if champion else None
            return {
                **decision,
                "model_version": plan.version,
                "promotion_reason": plan.reason,
                "champion_version": champion_version,
            }
        if plan.action == "regate":
            verdict = gate_version(run, str(plan.version), heldout, model_dir)
        else:
            verdict = register_and_gate(run, model_dir, heldout)
    return {
        **decision,
        "model_version": verdict["model_version"],
        "registered": plan.action == "train",
        "promoted": verdict["promoted"],
        "promotion_reason": verdict["promotion_reason"],
        "champion_version": verdict["champion_version"],
    }
