"""The model steps of `simpo-retrain`: train and gate a new training, regate a registered one, or skip.

What a rerun does is decided under a lock per training identity (`decision_lock`), held
until the gate has decided: two overlapping runs of one training take turns, and the
second finds the version the first registered (skip or regate) instead of registering a
second one.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefect.runtime import flow_run

from flows.params import RetrainParams
from simpo_core.audit.balance import AuditResult
from simpo_core.data.split import SplitResult
from simpo_core.data.validation import ValidationResult
from simpo_core.eval.settings import EvalSettings
from simpo_core.gate.promotion import GateSettings
from simpo_core.gate.rerun import RerunPlan, eval_identity
from simpo_core.train.config import SimPOConfig
from simpo_core.train.worker import TrainJob
from tasks.evaluate import evaluate_holdout_task
from tasks.helpers.tracking import Tracking
from tasks.promotion import promote_model_task
from tasks.regate import recorded_heldout_task, version_model_task
from tasks.registry import register_model_task
from tasks.replay import record_training_rows_task
from tasks.train import train_simpo_task

TRAININGS_DIR = "trainings"  # under output_dir: one folder per training identity
DECISIONS_DIR = ".decisions"  # under TRAININGS_DIR: one lock per training identity


@dataclass
class TrainingRun:
    """What the model steps of one training share: its settings, data and where it logs.

    `training` is what trains: the `train` group with the model group's LoRA (a sweep's
    winner: its trial's settings); `tracking` names the MLflow run the version comes from,
    and `links` adds runs the model card names besides it (a sweep's parent run).
    """

    params: RetrainParams
    identity: str
    training: SimPOConfig
    tracking: Tracking
    run_dir: Path
    validated: ValidationResult
    audited: AuditResult
    split: SplitResult
    links: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.params.registry.registered_model_name

    @property
    def eval_settings(self) -> EvalSettings:
        model = self.params.model
        return EvalSettings.for_training(
            self.params.eval, self.training, device=model.device, trust_remote_code=model.trust_remote_code
        )

    @property
    def gate(self) -> GateSettings:
        return GateSettings.fields_of(self.params.registry)

    @property
    def folder(self) -> Path:
        return training_folder(self.params.output_dir, self.identity)


@contextmanager
def decision_lock(output_dir: str, identity: str) -> Iterator[None]:
    """One run at a time decides, trains, registers and gates a training of `identity`.

    A file lock under `output_dir` (on one machine, or on a shared file system that
    implements `flock`): it is released when its holder exits, even by SIGKILL.
    """
    from simpo_core.train.training_folder import training_lock

    with training_lock(Path(output_dir).resolve() / TRAININGS_DIR / DECISIONS_DIR / identity[:16]):
        yield


def train_and_gate(run: TrainingRun) -> dict[str, Any]:
    """Train (in the identity's folder: resumable across flow runs), evaluate, register, gate."""
    params, model = run.params, run.params.model
    trained = train_simpo_task(training_job(params, run.training, run.split, run.folder), run.tracking, params.force)
    model_dir = str(trained.model_dir)
    heldout = evaluate_holdout_task(
        model.source, model_dir, run.split.heldout_path, run.eval_settings, run.run_dir / "eval", run.tracking
    )
    return {
        **register_and_gate(run, model_dir, heldout),
        "train_steps": trained.steps,
        "model_dir": model_dir,
        "resumed_from_step": trained.resumed_from_step,
        "reused_training": trained.reused,
        "packed_attention_path": trained.packed_attention_path,
        "peak_memory_mb": [round(peak / 2**20, 1) for peak in trained.peak_memory_bytes],  # per process
        "regated": False,
    }


def register_and_gate(run: TrainingRun, model_dir: str, heldout: dict[str, Any]) -> dict[str, Any]:
    """Record the rows this training used, register the model in `model_dir` as a new version
    (alias `challenger`) and let the gate decide; `simpo-retrain` and `simpo-sweep` alike."""
    record_training_rows_task(run.validated, run.run_dir / "data", run.tracking)
    version = register_model_task(
        model_dir,
        run.name,
        run.tracking,
        heldout,
        run.params.model.source,
        run.identity,
        eval_identity(run.eval_settings),
    )
    return gate_version(run, version, heldout, model_dir)


def regate_version(run: TrainingRun, plan: RerunPlan) -> dict[str, Any]:
    """Gate a registered version of this training without training it again: its held-out result
    is reused when it was measured under the current evaluation settings, else measured again."""
    model, version, uri = run.params.model, str(plan.version), run.tracking.uri
    heldout = recorded_heldout_task(run.name, version, eval_identity(run.eval_settings), uri)
    model_dir = None
    if heldout is None:
        model_dir = version_model_task(run.name, version, run.folder, uri)
        heldout = evaluate_holdout_task(
            model.source, model_dir, run.split.heldout_path, run.eval_settings, run.run_dir / "eval", run.tracking
        )
    challenger_dir = model_dir
    if challenger_dir is None and run.params.eval.judge != "none":  # the judged head-to-head needs its answers
        challenger_dir = version_model_task(run.name, version, run.folder, uri)
    return {
        **gate_version(run, version, heldout, challenger_dir),
        "train_steps": 0,
        "model_dir": model_dir,
        "resumed_from_step": None,
        "reused_training": True,
        "regated": True,
        "regate_reason": plan.reason,
    }


def gate_version(
    run: TrainingRun, version: str, heldout: dict[str, Any], challenger_dir: str | None = None
) -> dict[str, Any]:
    """Compare `version` with the champion and move the alias if the gate says so; with a judge,
    the model in `challenger_dir` answers against the champion's (`heldout.judge_vs_champion`)."""
    lineage = {
        "base_model": run.params.model.source,
        "data": run.validated.report(),
        "audit": {key: value for key, value in run.audited.report.items() if key != "buckets"},
        "training": run.training.model_dump(mode="json"),  # with the model group's LoRA
        "links": {"flow_run": str(flow_run.get_id() or "local"), "mlflow_run": run.tracking.run_id, **run.links},
    }
    verdict = promote_model_task(
        run.name,
        version,
        heldout,
        run.split.heldout_path,
        run.eval_settings,
        run.gate,
        run.tracking,
        lineage,
        challenger_dir,
    )
    return {
        "heldout": {**heldout, "judge_vs_champion": verdict.judge_vs_champion},
        "model_version": version,
        "promoted": verdict.promoted,
        "promotion_reason": verdict.reason,
        "champion_version": verdict.champion_version,
        "skipped": False,
    }


def skipped_summary(run: TrainingRun, plan: RerunPlan) -> dict[str, Any]:
    """The summary of a run that ends early: this training is registered and decided already."""
    from tasks.helpers.champion import current_champion

    champion = current_champion(run.tracking.client(), run.name)
    return {
        "skipped": True,
        "regated": False,
        "skip_reason": plan.reason,
        "heldout": None,
        "train_steps": 0,
        "model_dir": None,
        "resumed_from_step": None,
        "reused_training": False,
        "model_version": plan.version,
        "promoted": False,
        "promotion_reason": plan.reason,
        "champion_version": str(champion.version) if champion else None,
    }


def training_job(
    params: RetrainParams, training: SimPOConfig, split: SplitResult, folder: Path, device: str | None = None
) -> TrainJob:
    """The training of `training` on the split's pairs, written to `folder` (the identity's),
    on `device` (default: `model.device`), with the model group's starting model and options."""
    model = params.model
    return TrainJob(
        model.source,
        split.train_path,
        split.heldout_path,
        training.model_copy(update={"output_dir": folder}),
        trust_remote_code=model.trust_remote_code,
        device=device or model.device,
        quantization=model.quantization,
    )


def training_folder(output_dir: str, identity: str) -> Path:
    """Where a training with this identity keeps its checkpoints and model, across flow runs."""
    return Path(output_dir).resolve() / TRAININGS_DIR / identity[:16]


def training_config(params: RetrainParams) -> SimPOConfig:
    """The SimPO config with the model group's LoRA applied (both training paths read it:
    in-process and the worker under torchrun)."""
    if params.model.lora is None:
        return params.train
    return params.train.model_copy(update={"lora": params.model.lora})
