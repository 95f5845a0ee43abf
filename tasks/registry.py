"""Registry tasks: log and register the trained model, then gate the `champion` alias."""

from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NONE

from simpo_core.promotion import decide_promotion
from tasks.tracking import get_client

SERVING_CODE = Path(__file__).with_name("serving_model.py")
CHALLENGER, CHAMPION = "challenger", "champion"
MODEL_ARTIFACT = "model"


def serving_requirements() -> list[str]:
    """Pinned requirements of the logged model, read from the running environment."""
    from importlib.metadata import version

    return [f"{name}=={version(name)}" for name in ("mlflow", "torch", "transformers", "safetensors", "peft", "accelerate")]


def find_version_of_run(client, name: str, run_id: str):
    """The model version already registered from this run, if any (retry safety)."""
    versions = client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
    return max(versions, key=lambda v: int(v.version)) if versions else None


@task(name="register-model", retries=3, retry_delay_seconds=[2, 10, 30], cache_policy=NONE, timeout_seconds=1800)
def register_model_task(model_dir: str, name: str, tracking_uri: str, run_id: str, heldout: dict[str, Any]) -> str:
    """Log the model (pyfunc over the saved folder), register it, alias it `challenger`.

    Idempotent: a retry of this task, or a rerun of the flow run, finds the version
    registered from the same MLflow run instead of creating a second one.
    """
    import mlflow

    logger = get_run_logger()
    client = get_client(tracking_uri)
    existing = find_version_of_run(client, name, run_id)
    if existing is not None:
        logger.info("version %s of %r already registered from run %s", existing.version, name, run_id)
        version = existing.version
    else:
        mlflow.set_tracking_uri(tracking_uri)
        mlflow.set_registry_uri(tracking_uri)
        with mlflow.start_run(run_id=run_id):
            info = mlflow.pyfunc.log_model(
                name=MODEL_ARTIFACT, python_model=str(SERVING_CODE), artifacts={"model_dir": model_dir},
                pip_requirements=serving_requirements(),
            )
        version = client.create_model_version(
            name=_ensure_registered(client, name), source=info.model_uri, run_id=run_id, model_id=info.model_id
        ).version
        logger.info("registered %r version %s", name, version)
    client.set_registered_model_alias(name, CHALLENGER, version)
    for key in ("reward_accuracy", "length_controlled_accuracy", "reward_margin"):
        value = heldout["trained"].get(key)
        client.set_model_version_tag(name, version, f"heldout.{key}", "n/a" if value is None else f"{value:.4f}")
    return str(version)


def _ensure_registered(client, name: str) -> str:
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(name, description="SimPO policy trained by the simpo-retrain flow")
    except MlflowException as error:
        if "already exists" not in str(error).lower() and "RESOURCE_ALREADY_EXISTS" not in str(error):
            raise
    return name


def current_champion(client, name: str):
    """The version holding the `champion` alias, or None."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None


@task(name="promote-model", retries=3, retry_delay_seconds=[2, 10, 30], cache_policy=NONE, timeout_seconds=6 * 3600)
def promote_model_task(
    name: str, version: str, heldout: dict[str, Any], heldout_path: str, eval_settings: dict[str, Any],
    margin: float, tracking_uri: str,
) -> dict[str, Any]:
    """Move `champion` to this version only if it beats the champion on these held-out pairs."""
    logger = get_run_logger()
    client = get_client(tracking_uri)
    champion = current_champion(client, name)
    if champion is None:
        reference, reference_name = heldout["base"], "the starting model (no champion yet)"
    elif str(champion.version) == str(version):
        return {"promoted": True, "reason": f"version {version} is already the champion", "champion_version": version}
    else:
        reference, reference_name = evaluate_champion(champion, heldout_path, eval_settings, tracking_uri), f"champion v{champion.version}"
    decision = decide_promotion(heldout["trained"], reference, reference_name, margin)
    if decision.promoted:
        client.set_registered_model_alias(name, CHAMPION, version)
    client.set_model_version_tag(name, version, "promotion.decision", "promoted" if decision.promoted else "rejected")
    client.set_model_version_tag(name, version, "promotion.reason", decision.reason)
    champion_version = version if decision.promoted else (str(champion.version) if champion else None)
    logger.info("version %s %s: %s", version, "promoted" if decision.promoted else "not promoted", decision.reason)
    create_markdown_artifact(
        f"# Promotion\n\nVersion **{version}**: {'promoted to champion' if decision.promoted else 'not promoted'}.\n\n{decision.reason}\n",
        key="promotion-decision", description="champion gate",
    )
    return {"promoted": decision.promoted, "reason": decision.reason, "champion_version": champion_version}


def evaluate_champion(champion, heldout_path: str, eval_settings: dict[str, Any], tracking_uri: str) -> dict[str, Any]:
    """Re-evaluate the champion's weights on this run's held-out pairs."""
    import mlflow
    import pandas as pd

    from simpo_core.evaluation import evaluate_model
    from simpo_core.models import load_model_and_tokenizer

    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=champion.source, tracking_uri=tracking_uri))
    model, tokenizer = load_model_and_tokenizer(str(_model_dir_inside(local)))
    return evaluate_model(model, tokenizer, pd.read_parquet(heldout_path), **eval_settings)


def _model_dir_inside(downloaded: Path) -> Path:
    """The saved transformers folder inside a downloaded pyfunc model."""
    for config in sorted(downloaded.rglob("config.json")):
        if (config.parent / "model.safetensors").exists() or list(config.parent.glob("*.safetensors")) or (config.parent / "adapter_config.json").exists():
            return config.parent
    raise FileNotFoundError(f"no saved model folder (config.json + safetensors) inside {downloaded}")
