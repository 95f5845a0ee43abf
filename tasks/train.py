"""The `train-simpo` task: SimPO training that a retry, or a later run of the same training, resumes."""

import dataclasses
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_progress_artifact, update_progress_artifact
from prefect.runtime import task_run

from simpo_core.train.events import TrainerEvents
from simpo_core.train.training_folder import TrainResult
from simpo_core.train.worker import TrainJob
from tasks.helpers.retry import COMPUTE_TASK
from tasks.helpers.tracking import Tracking, log_metrics, process_mlflow_uri


class TrainingProgress(TrainerEvents):
    """Trainer listener: metrics to MLflow, progress to a Prefect progress artifact, the margin
    monitor's warnings and an early stop to MLflow tags (and a Markdown artifact per warning)."""

    def __init__(self, tracking: Tracking, total_steps: int) -> None:
        self.client = tracking.client()
        self.run_id = tracking.run_id
        self.total_steps = max(total_steps, 1)
        self.artifact_id = create_progress_artifact(0.0, key="training-progress", description="SimPO training steps")
        self.logger = get_run_logger()

    def on_log(self, step: int, metrics: dict[str, float]) -> None:
        self._progress(step, metrics)

    def on_eval(self, step: int, metrics: dict[str, float]) -> None:
        self._report("eval", step, metrics)

    def on_checkpoint(self, step: int, metrics: dict[str, float]) -> None:
        self._report("checkpoint", step, metrics)

    def on_end(self, step: int, metrics: dict[str, float]) -> None:
        self._report("end", step, metrics)

    def on_warning(self, step: int, kind: str, message: str) -> None:
        self.logger.warning("step %d: %s", step, message)
        self.client.set_tag(self.run_id, f"train.warning.{kind}", f"step {step}: {message}")
        create_markdown_artifact(
            f"# Training warning: {kind}\n\nAt step {step}/{self.total_steps}: {message}",
            key=f"training-warning-{kind.replace('_', '-')}",
            description="SimPO margin monitor",
        )

    def on_early_stop(self, step: int, message: str) -> None:
        self.logger.info(message)
        self.client.set_tag(self.run_id, "train.early_stopped_at", str(step))

    def _progress(self, step: int, metrics: dict[str, float]) -> dict[str, float]:
        """Log the step's numbers to MLflow and move the progress artifact; return the numbers."""
        numbers = log_training_metrics(self.client, self.run_id, step, metrics)
        if self.artifact_id is not None:
            update_progress_artifact(self.artifact_id, min(100.0, 100.0 * step / self.total_steps))
        return numbers

    def _report(self, event: str, step: int, metrics: dict[str, float]) -> None:
        numbers = self._progress(step, metrics)
        self.logger.info("%s at step %d/%d: %s", event, step, self.total_steps, _short(numbers))


def log_training_metrics(client: Any, run_id: str, step: int, metrics: dict[str, Any]) -> dict[str, float]:
    """Log the numeric training metrics of one step as `train/<name>`; return them."""
    numbers = {key: value for key, value in metrics.items() if isinstance(value, (int, float)) and key != "step"}
    log_metrics(client, run_id, {f"train/{key}": value for key, value in numbers.items()}, step=step)
    return numbers


@task(name="train-simpo", timeout_seconds=10 * 3600, **COMPUTE_TASK)
def train_simpo_task(job: TrainJob, tracking: Tracking, fresh: bool = False) -> TrainResult:
    """Run the training `job` (its train pairs, evaluated on its held-out pairs), logging into
    `tracking`; return the saved model and what the training did.

    The job's `output_dir` is named by the training identity, so the same training in a later
    flow run (after a dead worker) finds its checkpoints and resumes, and a finished one is
    reused. `fresh` (the flow's `force`) discards an earlier training there first.
    """
    from simpo_core.train.checkpoint import find_latest_checkpoint
    from simpo_core.train.launch import needs_launch
    from simpo_core.train.training_folder import clear_training, finished_training, training_lock

    out_dir = job.config.output_dir
    logger = get_run_logger()
    with training_lock(out_dir):  # a concurrent run of the same training waits, then reuses it
        if fresh and task_run.run_count == 1:
            clear_training(out_dir)
        done = finished_training(out_dir)
        if done is not None:
            logger.info("reusing the finished training in %s (%d steps)", out_dir, done.steps)
            return training_result(dataclasses.replace(done, reused=True))
        resume = find_latest_checkpoint(out_dir) is not None
        if resume:
            logger.info("resuming from the newest complete checkpoint in %s (try %d)", out_dir, task_run.run_count)
        result = launch_training(job, resume, tracking) if needs_launch(job) else None
        result = result or train_in_process(job, resume, tracking)
        log_training_facts(result, tracking)
        return training_result(result)


def train_in_process(job: TrainJob, resume: bool, tracking: Tracking) -> TrainResult:
    from simpo_core.train.worker import build_trainer, finish_training

    trainer = build_trainer(job)
    trainer.callbacks.append(TrainingProgress(tracking, trainer.total_steps()))
    history = train_with_system_metrics(trainer, resume, tracking)
    return finish_training(trainer, job, history)


def training_result(result: TrainResult) -> TrainResult:
    """Publish a training's summary (Prefect artifact, log line) and pass the result on."""
    create_markdown_artifact(
        _summary_markdown(result.history, result.model_dir), key="training-summary", description="SimPO training"
    )
    get_run_logger().info(
        "trained %d steps; model saved to %s; packed attention: %s (%d fallbacks); peak memory per process: %s MiB",
        result.steps,
        result.model_dir,
        result.packed_attention_path or "not used",
        result.packed_attention_fallbacks,
        ", ".join(f"{peak / 2**20:.0f}" for peak in result.peak_memory_bytes) or "n/a",
    )
    return result


def log_training_facts(result: TrainResult, tracking: Tracking) -> None:
    """How packed attention ran (`train.packed_attention_path`), how often it fell back, and each
    process's peak memory (`train/peak_memory_mb/rank<N>`: allocated on a GPU, resident on CPU)."""
    client = tracking.client()
    client.set_tag(tracking.run_id, "train.packed_attention_path", result.packed_attention_path or "not used")
    facts = {"train/packed_attention_fallbacks": result.packed_attention_fallbacks}
    facts.update(
        {f"train/peak_memory_mb/rank{rank}": peak / 2**20 for rank, peak in enumerate(result.peak_memory_bytes)}
    )
    log_metrics(client, tracking.run_id, facts)


def launch_training(job: TrainJob, resume: bool, tracking: Tracking) -> TrainResult:
    """Run the training worker in `num_processes` processes (on `nnodes` machines) under torchrun.

    Metrics reach MLflow when the processes finish (from the history the main process writes).
    A process's data or configuration error arrives as that error, which is not retried.
    """
    from simpo_core.train.launch import launch

    result = launch(job, resume)
    client = tracking.client()
    for entry in result.history:
        log_training_metrics(client, tracking.run_id, int(entry.get("step", 0)), entry)
    return result


def train_with_system_metrics(trainer: Any, resume: bool, tracking: Tracking) -> list[dict[str, Any]]:
    """Train while MLflow samples CPU, memory (and GPU where present) into the run."""
    import mlflow

    with process_mlflow_uri(tracking.uri), mlflow.start_run(run_id=tracking.run_id, log_system_metrics=True):
        return trainer.train(resume=resume)


def _short(metrics: dict[str, float]) -> str:
    keys = ("loss", "rewards/accuracies", "rewards/margins", "eval_rewards/accuracies", "eval_loss")
    return ", ".join(f"{key}={metrics[key]:.4f}" for key in keys if key in metrics)


def _summary_markdown(history: list[dict[str, Any]], model_dir: Path) -> str:
    """The last logged steps as a Markdown table (blank cells where a step has no value)."""
    columns = ("step", "loss", "rewards/accuracies", "rewards/margins", "eval_rewards/accuracies")
    lines = [
        "# SimPO training",
        "",
        f"Model: `{model_dir}`",
        "",
        "| " + " | ".join(columns) + " |",
        "|---" * len(columns) + "|",
    ]
    for entry in history[-12:]:
        lines.append("| " + " | ".join(_cell(entry.get(column)) for column in columns) + " |")
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return "" if value is None else str(value)
