"""The `simpo-retrain` flow: load → validate → audit → split → train → evaluate → register → promote."""

import time
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from flows.alerts import alert_on_failure, check_alert_block
from flows.params import RetrainParams, check_sources
from simpo_core.data.mix import SourceSpec, check_unique_names
from simpo_core.data.settings import SplitSettings, ValidateSettings
from simpo_core.errors import ConfigError
from simpo_core.eval.settings import EvalSettings
from simpo_core.promotion import GateSettings
from tasks.data import (
    audit_length_balance_task,
    audit_mix_task,
    audit_named_source_task,
    load_preferences_task,
    mix_sources_task,
    replay_sources_task,
    split_holdout_task,
    validate_named_source_task,
    validate_preferences_task,
)
from tasks.evaluate import evaluate_holdout_task
from tasks.identity import check_training_identity_task
from tasks.mlflow_run import end_tracking_run, start_tracking_run
from tasks.promotion import promote_model_task
from tasks.registry import register_model_task
from tasks.tracking import resolve_tracking_uri
from tasks.train import train_simpo_task

TRAININGS_DIR = "trainings"  # under output_dir: one folder per training identity


def retrain_run_name() -> str:
    """Flow run name that says the data and the model, e.g. `synthetic-on-tiny-0f3a`."""
    raw = flow_run.get_parameters().get("params") or {}
    params = raw if isinstance(raw, dict) else raw.model_dump()
    data_params = params.get("data", {})
    data = Path(str(data_params.get("source", "synthetic"))).name.split(":")[0]
    if data_params.get("sources"):
        data = "mix"
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
    validated, audited, split = data_steps(params, run_dir, tracking_uri, run_id)
    name = params.registry.registered_model_name
    training = training_config(params)
    identity = check_training_identity_task(
        validated.fingerprint,
        data_settings(params),
        training.model_dump(mode="json"),
        params.model.source,
        name,
        tracking_uri,
        params.force,
    )
    summary = {
        "validation": validated.summary,
        "audit": audited.report,
        "registered_model_name": name,
        "training_identity": identity["identity"],
    }
    if identity["existing_version"] is not None:
        return {**summary, **_skipped(identity, name, tracking_uri)}
    return {
        **summary,
        **_model_steps(
            params, training, split, identity["identity"], tracking_uri, run_id, run_dir, validated, audited
        ),
    }


def data_settings(params: RetrainParams) -> dict[str, Any]:
    """The data-step settings that are part of a training's identity."""
    return {
        "validate": ValidateSettings.fields_of(params.data).model_dump(mode="json"),
        "split": SplitSettings.fields_of(params.data).model_dump(mode="json"),
        "audit": params.audit.model_dump(mode="json"),
    }


def data_steps(params: RetrainParams, run_dir: Path, tracking_uri: str, run_id: str) -> tuple[Any, Any, Any]:
    """Check the source, validate it (streamed), audit length balance, split the held-out pairs.

    With `data.sources` (or `data.replay` and a champion to replay) each source is validated
    and audited on its own and the mix of them is split."""
    data, model = params.data, params.model
    sources = data.sources or [SourceSpec(source=data.source, fraction=1.0)]
    if data.replay > 0:
        sources = [
            *sources,
            *replay_sources_task(params.registry.registered_model_name, tracking_uri, data.replay, sources),
        ]
    if len(sources) > 1 or data.sources is not None:
        validated, audited = _mixed_data_steps(params, sources, run_dir, tracking_uri, run_id)
    else:
        load_preferences_task(data.source)
        validated = validate_preferences_task(
            data.source,
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


def _model_steps(
    params: RetrainParams,
    training: Any,
    split: Any,
    identity: str,
    tracking_uri: str,
    run_id: str,
    run_dir: Path,
    validated: Any,
    audited: Any,
) -> dict[str, Any]:
    """Train (in the identity's folder: resumable across flow runs), evaluate, register, promote."""
    model, name = params.model, params.registry.registered_model_name
    trained = train_simpo_task(
        model.source,
        training,
        split,
        training_folder(params.output_dir, identity),
        tracking_uri,
        run_id,
        model.trust_remote_code,
        model.device,
        params.force,
    )
    eval_settings = EvalSettings.for_training(
        params.eval, params.train, device=model.device, trust_remote_code=model.trust_remote_code
    )
    heldout = evaluate_holdout_task(
        model.source, trained["model_dir"], split.heldout_path, eval_settings, run_dir / "eval", tracking_uri, run_id
    )
    version = register_model_task(trained["model_dir"], name, tracking_uri, run_id, heldout, model.source, identity)
    lineage = {
        "base_model": model.source,
        "data": validated.report(),
        "audit": {key: value for key, value in audited.report.items() if key != "buckets"},
        "training": params.train.model_dump(mode="json"),
        "links": {"flow_run": str(flow_run.get_id() or "local"), "mlflow_run": run_id},
    }
    gate = GateSettings.fields_of(params.registry)
    decision = promote_model_task(
        name, version, heldout, split.heldout_path, eval_settings, gate, tracking_uri, lineage
    )
    return {
        "heldout": heldout,
        "train_steps": trained["steps"],
        "model_dir": trained["model_dir"],
        "resumed_from_step": trained["resumed_from_step"],
        "reused_training": trained["reused"],
        "model_version": version,
        "promoted": decision["promoted"],
        "promotion_reason": decision["reason"],
        "champion_version": decision["champion_version"],
        "skipped": False,
    }


def _skipped(identity: dict[str, Any], name: str, tracking_uri: str) -> dict[str, Any]:
    """The summary of a run that ends early: this training is registered already."""
    from tasks.champion import current_champion
    from tasks.tracking import get_client

    champion = current_champion(get_client(tracking_uri), name)
    return {
        "skipped": True,
        "skip_reason": identity["reason"],
        "heldout": None,
        "train_steps": 0,
        "model_dir": None,
        "resumed_from_step": None,
        "reused_training": False,
        "model_version": identity["existing_version"],
        "promoted": False,
        "promotion_reason": identity["reason"],
        "champion_version": str(champion.version) if champion else None,
    }


def training_folder(output_dir: str, identity: str) -> Path:
    """Where a training with this identity keeps its checkpoints and model, across flow runs."""
    return Path(output_dir).resolve() / TRAININGS_DIR / identity[:16]


def run_folder(output_dir: str, name: str) -> Path:
    """`output_dir/name`, refusing a name that would land outside `output_dir`."""
    base = Path(output_dir).resolve()
    folder = (base / name).resolve()
    if folder.parent != base:
        raise ConfigError(f"run folder name {name!r} would escape output_dir {base}")
    return folder


def training_config(params: RetrainParams):
    """The SimPO config with the model group's LoRA applied (both training paths read it:
    in-process and the worker under torchrun)."""
    if params.model.lora is None:
        return params.train
    return params.train.model_copy(update={"lora": params.model.lora})
