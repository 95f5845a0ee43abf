"""The `simpo-retrain` flow: load → validate → audit → split → train → evaluate → register → promote."""

import time
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from flows.alerts import alert_on_failure, check_alert_block
from flows.model_steps import (
    TrainingRun,
    decision_lock,
    regate_version,
    skipped_summary,
    train_and_gate,
    training_config,
)
from flows.params import RetrainParams, check_sources
from simpo_core.data.mix import SourceSpec, check_unique_names
from simpo_core.data.settings import SplitSettings, ValidateSettings
from simpo_core.errors import ConfigError
from simpo_core.gate.rerun import gate_identity
from simpo_core.generate.settings import GenerateSettings
from tasks.data import (
    audit_length_balance_task,
    audit_mix_task,
    audit_named_source_task,
    load_preferences_task,
    mix_sources_task,
    split_holdout_task,
    validate_named_source_task,
    validate_preferences_task,
)
from tasks.generation import generate_pairs_task
from tasks.helpers.tracking import resolve_tracking_uri
from tasks.identity import check_training_identity_task, training_identity_task
from tasks.mlflow_run import end_tracking_run, start_tracking_run
from tasks.replay import replay_sources_task

GENERATED_SOURCE = "generated"  # the name of the generated pairs in a mix of sources
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
    started = time.perf_counter()
    check_sources(params)
    run_id_of_flow = str(flow_run.get_id() or "local")
    run_dir = run_folder(params.output_dir, run_id_of_flow)
    tracking_uri = resolve_tracking_uri(params.registry.tracking_uri)
    mlflow_run_id = start_tracking_run(
        tracking_uri,
        params.registry.experiment_name,
        flow_run.get_name() or "simpo-retrain",
        run_id_of_flow,
        params.model_dump(mode="json"),
    )
    try:
        summary = _retrain_steps(params, run_dir, tracking_uri, mlflow_run_id)
    except BaseException:
        end_tracking_run(tracking_uri, mlflow_run_id, "FAILED")
        raise
    end_tracking_run(tracking_uri, mlflow_run_id, "FINISHED")
    summary.update(
        mlflow_run_id=mlflow_run_id,
        flow_run_id=run_id_of_flow,
        run_dir=str(run_dir),
        wall_seconds=round(time.perf_counter() - started, 1),
    )
    get_run_logger().info("done in %.1f s: %s", summary["wall_seconds"], summary["promotion_reason"])
    return summary


def _retrain_steps(params: RetrainParams, run_dir: Path, tracking_uri: str, run_id: str) -> dict[str, Any]:
    generation = generate_steps(params, run_dir, tracking_uri, run_id)
    pairs = generation["pairs_path"] if generation else None
    validated, audited, split = data_steps(params, run_dir, tracking_uri, run_id, pairs)
    model = params.model
    identity = training_identity_task(
        validated.fingerprint, data_settings(params, generation), training_config(params), model.source, model.device
    )
    run = TrainingRun(params, identity, tracking_uri, run_id, run_dir, validated, audited, split)
    summary = {
        "validation": validated.summary,
        "audit": audited.report,
        "registered_model_name": run.name,
        "training_identity": identity,
        "generation": generation,
    }
    # Held until the gate decided: an overlapping run of this training waits, then finds its version.
    with decision_lock(params.output_dir, identity):
        current_gate = gate_identity(run.eval_settings, run.gate)
        plan = check_training_identity_task(identity, run.name, tracking_uri, current_gate, params.force)
        if plan.action == "skip":
            return {**summary, **skipped_summary(run, plan)}
        if plan.action == "regate":
            return {**summary, **regate_version(run, plan)}
        return {**summary, **train_and_gate(run)}


def data_settings(params: RetrainParams, generation: dict[str, Any] | None = None) -> dict[str, Any]:
    """The data-step settings that are part of a training's identity (with generated pairs: the
    prompts' fingerprint, the generator's and the judge's identity and the sampling settings)."""
    settings = {
        "validate": ValidateSettings.fields_of(params.data).model_dump(mode="json"),
        "split": SplitSettings.fields_of(params.data).model_dump(mode="json"),
        "audit": params.audit.model_dump(mode="json"),
    }
    if generation is not None:
        settings["generate"] = {
            "prompts": generation["prompt_validation"]["fingerprint"],
            "generator": generation["generator"]["identity"],
            "judge": generation["judge"]["identity"],
            "sampling": generation["sampling"],
        }
    return settings


def generate_steps(params: RetrainParams, run_dir: Path, tracking_uri: str, run_id: str) -> dict[str, Any] | None:
    """With `generate.prompts`: the champion (or `generate.generator`) answers them, the judge
    picks; the summary of the pairs made, or None without prompts."""
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
        tracking_uri,
        run_id,
        model.device,
        model.trust_remote_code,
        Path(params.output_dir) / GENERATED_DIR,
    )


def data_steps(
    params: RetrainParams, run_dir: Path, tracking_uri: str, run_id: str, generated: str | None = None
) -> tuple[Any, Any, Any]:
    """Check the source, validate it (streamed), audit length balance, split the held-out pairs.

    With `data.sources` (or `data.replay` and a champion to replay) each source is validated
    and audited on its own and the mix of them is split."""
    data, model = params.data, params.model
    sources = data.sources or [SourceSpec(source=data.source, fraction=1.0)]
    if generated is not None:  # the generated pairs are the data, mixed with data.sources when given
        mine = SourceSpec(source=generated, name=GENERATED_SOURCE, fraction=1.0)
        sources = [*data.sources, mine] if data.sources else [mine]
    if data.replay > 0:
        sources = [
            *sources,
            *replay_sources_task(params.registry.registered_model_name, tracking_uri, data.replay, params.output_dir),
        ]
    if len(sources) > 1 or data.sources is not None:
        validated, audited = _mixed_data_steps(params, sources, run_dir, tracking_uri, run_id)
    else:
        load_preferences_task(sources[0].source)
        validated = validate_preferences_task(
            sources[0].source,
            ValidateSettings.fields_of(data),
            model.source,
            run_dir / "data",
            tracking_uri,
            run_id,
            model.trust_remote_code,
        )
        audited = audit_length_balance_task(
            validated, model.source, params.audit, run_dir / "audit", tracking_uri, run_id, model.trust_remote_code
        )
    split = split_holdout_task(
        validated.valid_path,
        SplitSettings.fields_of(data),
        run_dir / "data",
        tracking_uri,
        run_id,
    )
    return validated, audited, split


def _mixed_data_steps(
    params: RetrainParams, sources: list[SourceSpec], run_dir: Path, tracking_uri: str, run_id: str
) -> tuple[Any, Any]:
    """Validate and audit each source in its own folder (`data/sources/NAME`), then mix them."""
    data, model = params.data, params.model
    try:
        check_unique_names(sources)
    except ValueError as error:
        raise ConfigError(f"data.sources: {error}") from None
    settings = ValidateSettings.fields_of(data)
    parts, reports = [], {}
    for spec in sources:
        load_preferences_task(spec.source)
        validated = validate_named_source_task(
            spec,
            settings,
            model.source,
            run_dir / "data" / "sources" / spec.name,
            tracking_uri,
            run_id,
            model.trust_remote_code,
        )
        reports[spec.name] = audit_named_source_task(
            spec.name,
            validated,
            model.source,
            params.audit,
            run_dir / "audit" / "sources" / spec.name,
            tracking_uri,
            run_id,
            model.trust_remote_code,
        )
        parts.append((spec, validated))
    mixed = mix_sources_task(parts, run_dir / "data", tracking_uri, run_id)
    audited = audit_mix_task(
        mixed, reports, model.source, params.audit, run_dir / "audit", tracking_uri, run_id, model.trust_remote_code
    )
    return mixed, audited


def run_folder(output_dir: str, name: str) -> Path:
    """`output_dir/name`, refusing a name that would land outside `output_dir`."""
    base = Path(output_dir).resolve()
    folder = (base / name).resolve()
    if folder.parent != base:
        raise ConfigError(f"run folder name {name!r} would escape output_dir {base}")
    return folder
