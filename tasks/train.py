"""The `train-simpo` task: SimPO training that a retry resumes from its checkpoint."""

from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_progress_artifact, update_progress_artifact
from prefect.runtime import task_run

from simpo_core.train.config import SimPOConfig
from tasks.retry import COMPUTE_TASK
from tasks.tracking import get_client, log_metrics


class TrainingProgress:
    """Trainer callback: metrics to MLflow, progress to a Prefect progress artifact."""

    def __init__(self, tracking_uri: str, run_id: str, total_steps: int) -> None:
        self.client = get_client(tracking_uri)
        self.run_id = run_id
        self.total_steps = max(total_steps, 1)
        self.artifact_id = create_progress_artifact(0.0, key="training-progress", description="SimPO training steps")
        self.logger = get_run_logger()

    def __call__(self, event: str, step: int, metrics: dict[str, float]) -> None:
        numbers = log_training_metrics(self.client, self.run_id, step, metrics)
        if self.artifact_id is not None:
            update_progress_artifact(self.artifact_id, min(100.0, 100.0 * step / self.total_steps))
        if event in ("eval", "checkpoint", "end"):
            self.logger.info("%s at step %d/%d: %s", event, step, self.total_steps, _short(numbers))


def log_training_metrics(client: Any, run_id: str, step: int, metrics: dict[str, Any]) -> dict[str, float]:
    """Log the numeric training metrics of one step as `train/<name>`; return them."""
    numbers = {key: value for key, value in metrics.items() if isinstance(value, (int, float)) and key != "step"}
    log_metrics(client, run_id, {f"train/{key}": value for key, value in numbers.items()}, step=step)
    return numbers


@task(name="train-simpo", timeout_seconds=12 * 3600, **COMPUTE_TASK)
def train_simpo_task(
    model_source: str, config: SimPOConfig, data_paths: dict[str, str], out_dir: Path, tracking_uri: str, run_id: str
) -> dict[str, Any]:
    """Train from `data_paths["train"]`, evaluating on `data_paths["heldout"]`; return the model folder."""
    import pandas as pd

    from simpo_core.models import load_model_and_tokenizer, write_provenance
    from simpo_core.train.trainer import SimPOTrainer

    logger = get_run_logger()
    config = config.model_copy(update={"output_dir": Path(out_dir)})
    resume = task_run.run_count > 1
    if resume:
        logger.info("retry %d of train-simpo: resuming from the newest complete checkpoint", task_run.run_count)
    if config.num_processes > 1:
        return train_under_torchrun(model_source, config, data_paths, resume, tracking_uri, run_id)
    model, tokenizer = load_model_and_tokenizer(model_source, trust_remote_code=config.trust_remote_code)
    train_rows, heldout_rows = pd.read_parquet(data_paths["train"]), pd.read_parquet(data_paths["heldout"])
    trainer = SimPOTrainer(model, config, tokenizer=tokenizer, train_dataset=train_rows, eval_dataset=heldout_rows)
    trainer.callbacks.append(TrainingProgress(tracking_uri, run_id, trainer.total_steps()))
    history = train_with_system_metrics(trainer, resume, tracking_uri, run_id)
    model_dir = Path(trainer.save_model(out_dir / "final"))
    write_provenance(model_dir, model_source)
    return training_result(history, model_dir)


def training_result(history: list[dict[str, Any]], model_dir: Path) -> dict[str, Any]:
    """What the flow passes on: the model folder, the steps run and the last metrics."""
    last = next((entry for entry in reversed(history) if "loss" in entry), {})
    create_markdown_artifact(
        _summary_markdown(history, model_dir), key="training-summary", description="SimPO training"
    )
    get_run_logger().info("trained %d steps; model saved to %s", last.get("step", 0), model_dir)
    return {"model_dir": str(model_dir), "steps": int(last.get("step", 0)), "final_metrics": last}


def train_under_torchrun(
    model_source: str, config: SimPOConfig, data_paths: dict[str, str], resume: bool, tracking_uri: str, run_id: str
) -> dict[str, Any]:
    """Run `simpo train` in `config.num_processes` processes under torchrun (same effective batch).

    Metrics reach MLflow when the processes finish (from the history the main process writes).
    """
    import json
    import subprocess
    import sys

    import yaml

    from flows.commands.train import HISTORY_FILE
    from simpo_core.train.distributed import torchrun_command

    out_dir = Path(config.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    job = out_dir / "train-job.yaml"
    job.write_text(
        yaml.safe_dump(
            {
                "model": model_source,
                "train_data": data_paths["train"],
                "eval_data": data_paths["heldout"],
                "simpo": config.model_dump(mode="json"),
            }
        )
    )
    # The console script beside this interpreter: the venv's bin folder need not be on PATH.
    simpo = str(Path(sys.executable).parent / "simpo")
    command = torchrun_command(
        [simpo, "train", "--config", str(job), *(["--resume"] if resume else [])], config.num_processes
    )
    get_run_logger().info("training in %d processes: %s", config.num_processes, " ".join(command))
    completed = subprocess.run(command)
    if completed.returncode != 0:
        raise RuntimeError(f"torchrun training exited with {completed.returncode}; see its output above")
    history = json.loads((out_dir / HISTORY_FILE).read_text())
    client = get_client(tracking_uri)
    for entry in history:
        log_training_metrics(client, run_id, int(entry.get("step", 0)), entry)
    return training_result(history, out_dir / "final")


def train_with_system_metrics(trainer: Any, resume: bool, tracking_uri: str, run_id: str) -> list[dict[str, Any]]:
    """Train while MLflow samples CPU, memory (and GPU where present) into the run."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    with mlflow.start_run(run_id=run_id, log_system_metrics=True):
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
