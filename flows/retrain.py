"""The `simpo-retrain` flow: load → validate → audit → split → train → evaluate → register → promote."""

from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from flows.alerts import alert_on_failure, check_alert_block
from flows.data_steps import data_steps
from flows.model_steps import (
    TrainingRun,
    decision_lock,
    regate_version,
    skipped_summary,
    train_and_gate,
    training_config,
)
from flows.params import RetrainParams, check_sources
from flows.tracked_run import run_folder, run_tracked
from simpo_core.data.settings import SplitSettings, ValidateSettings
from simpo_core.gate.rerun import gate_identity
from simpo_core.generate.pairs import GenerationResult
from simpo_core.generate.settings import GenerateSettings
from tasks.generation import generate_pairs_task
from tasks.helpers.tracking import Tracking
from tasks.identity import check_training_identity_task, training_identity_task

__all__ = ["retrain_run_name", "run_folder", "simpo_retrain"]

GENERATED_DIR = "generated"  # under output_dir: generated pairs kept by content (stable fingerprints)


def retrain_run_name() -> str:
    """Flow run name that says the data and the model, e.g. `synthetic-on-tiny-0f3a`."""
    raw = flow_run.get_parameters().get("params") or {}
    params = raw if isinstance(raw, dict) else raw.model_dump()
    data_params = params.get("data", {})
    data = Path(str(data_params.get("source", "synthetic"))).name.split(":")[0]
    if data_params.get("sources"):
        data = "mix"
    prompts = (params.get("generate") or {}).get("prompts")
    if prompts:  # the on-policy loop: the data is generated from these prompts
        data = "on-policy-" + Path(str(prompts)).name.split(":")[0]
    model = Path(str(params.get("model", {}).get("source", "tiny"))).name
    return f"{data}-on-{model}-{str(flow_run.get_id())[:4]}"


@flow(
    name="simpo-retrain",
    flow_run_name=retrain_run_name,
    log_prints=True,
    # 22 h: below the 24 h nightly period, with the step timeouts and retries inside it
    # (the budget is in deployments/README.md).
    timeout_seconds=22 * 3600,
    on_running=[check_alert_block],
    on_failure=[alert_on_failure],
    on_crashed=[alert_on_failure],
)
def simpo_retrain(params: RetrainParams = RetrainParams()) -> dict[str, Any]:
    """Retrain a policy with SimPO on fresh preference data and promote it if it wins."""
    check_sources(params)
    summary = run_tracked(
        params, "simpo-retrain", params.model_dump(mode="json"), lambda folder, run: _retrain_steps(params, folder, run)
    )
    get_run_logger().info("%s", summary["promotion_reason"])
    return summary


def _retrain_steps(params: RetrainParams, run_dir: Path, tracking: Tracking) -> dict[str, Any]:
    generation = generate_steps(params, run_dir, tracking)
    pairs = str(generation.pairs_path) if generation else None
    validated, audited, split = data_steps(params, run_dir, tracking, pairs)
    model, training = params.model, training_config(params)
    identity = training_identity_task(
        validated.fingerprint,
        data_settings(params, generation),
        training,
        model.source,
        model.device,
        model.quantization,
    )
    run = TrainingRun(params, identity, training, tracking, run_dir, validated, audited, split)
    summary = {
        "validation": validated.summary,
        "audit": audited.report,
        "registered_model_name": run.name,
        "training_identity": run.identity,
        "generation": generation.summary() if generation else None,
    }
    # Held until the gate decided: an overlapping run of this training waits, then finds its version.
    with decision_lock(params.output_dir, run.identity):
        current_gate = gate_identity(run.eval_settings, run.gate)
        plan = check_training_identity_task(run.identity, run.name, tracking.uri, current_gate, params.force)
        if plan.action == "skip":
            return {**summary, **skipped_summary(run, plan)}
        if plan.action == "regate":
            return {**summary, **regate_version(run, plan)}
        return {**summary, **train_and_gate(run)}


def data_settings(params: RetrainParams, generation: GenerationResult | None = None) -> dict[str, Any]:
    """The data-step settings that are part of a training's identity (with generated pairs: the
    prompts' fingerprint, the generator's and the judge's identity and the sampling settings)."""
    settings = {
        "validate": ValidateSettings.fields_of(params.data).model_dump(mode="json"),
        "split": SplitSettings.fields_of(params.data).model_dump(mode="json"),
        "audit": params.audit.model_dump(mode="json"),
    }
    if generation is not None:
        summary = generation.summary()
        settings["generate"] = {
            "prompts": summary["prompt_validation"]["fingerprint"],
            "generator": summary["generator"]["identity"],
            "judge": summary["judge"]["identity"],
            "sampling": summary["sampling"],
        }
    return settings


def generate_steps(params: RetrainParams, run_dir: Path, tracking: Tracking) -> GenerationResult | None:
    """With `generate.prompts`: the champion (or `generate.generator`) answers them, the judge
    picks; the pairs made, or None without prompts."""
    generate, model = params.generate, params.model
    if generate.prompts is None:
        return None
    return generate_pairs_task(
        generate.prompts,
        generate.generator,
        model.source,
        GenerateSettings.fields_of(generate),
        run_dir / "generate",
        params.registry.registered_model_name,
        tracking,
        model.device,
        model.trust_remote_code,
        Path(params.output_dir) / GENERATED_DIR,
    )
