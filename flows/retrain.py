"""The `simpo-retrain` flow: load → validate → audit → split → train → evaluate → register → promote."""

import time
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from flows.params import RetrainParams, check_sources
from simpo_core.data.settings import SplitSettings, ValidateSettings
from simpo_core.errors import ConfigError
from simpo_core.eval.settings import EvalSettings
from simpo_core.promotion import GateSettings
from tasks.data import audit_length_balance_task, load_preferences_task, split_holdout_task, validate_preferences_task
from tasks.evaluate import evaluate_holdout_task
from tasks.mlflow_run import end_tracking_run, start_tracking_run
from tasks.promotion import promote_model_task
from tasks.registry import register_model_task
from tasks.tracking import resolve_tracking_uri
from tasks.train import train_simpo_task


def retrain_run_name() -> str:
    """Flow run name that says the data and the model, e.g. `synthetic-on-tiny-0f3a`."""
    raw = flow_run.get_parameters().get("params") or {}
    params = raw if isinstance(raw, dict) else raw.model_dump()
    data = Path(str(params.get("data", {}).get("source", "synthetic"))).name.split(":")[0]
    model = Path(str(params.get("model", {}).get("source", "tiny"))).name
    return f"{data}-on-{model}-{str(flow_run.get_id())[:4]}"


@flow(name="simpo-retrain", flow_run_name=retrain_run_name, log_prints=True)
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
    data, model = params.data, params.model
    load_preferences_task(data.source)
    validated = validate_preferences_task(
        data.source,
        ValidateSettings.model_validate(data, from_attributes=True),
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
        SplitSettings.model_validate(data, from_attributes=True),
        run_dir / "data",
        tracking_uri,
        run_id,
    )
    trained = train_simpo_task(
        model.source,
        training_config(params),
        split,
        run_dir / "train",
        tracking_uri,
        run_id,
        model.trust_remote_code,
        model.device,
    )
    eval_settings = EvalSettings.for_training(
        params.eval, params.train, device=model.device, trust_remote_code=model.trust_remote_code
    )
    heldout = evaluate_holdout_task(
        model.source,
        trained["model_dir"],
        split.heldout_path,
        eval_settings,
        run_dir / "eval",
        tracking_uri,
        run_id,
    )
    name = params.registry.registered_model_name
    version = register_model_task(trained["model_dir"], name, tracking_uri, run_id, heldout, model.source)
    lineage = {
        "base_model": model.source,
        "data": validated.report(),
        "audit": {key: value for key, value in audited.report.items() if key != "buckets"},
        "training": params.train.model_dump(mode="json"),
        "links": {"flow_run": str(flow_run.get_id() or "local"), "mlflow_run": run_id},
    }
    gate = GateSettings.model_validate(params.registry, from_attributes=True)
    decision = promote_model_task(
        name, version, heldout, split.heldout_path, eval_settings, gate, tracking_uri, lineage
    )
    return {
        "validation": validated.summary,
        "audit": audited.report,
        "heldout": heldout,
        "train_steps": trained["steps"],
        "model_dir": trained["model_dir"],
        "registered_model_name": name,
        "model_version": version,
        "promoted": decision["promoted"],
        "promotion_reason": decision["reason"],
        "champion_version": decision["champion_version"],
    }


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
