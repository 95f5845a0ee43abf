"""The `promote-model` task: move `champion` only to a challenger that beats it."""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from simpo_core.eval.settings import EvalSettings
from simpo_core.promotion import PromotionDecision, decide_promotion
from tasks.registry import CHAMPION
from tasks.retry import IO_TASK, tracking_errors
from tasks.tracking import get_client


@task(name="promote-model", timeout_seconds=6 * 3600, **IO_TASK)
def promote_model_task(
    name: str,
    version: str,
    heldout: dict[str, Any],
    heldout_path: Path,
    eval_settings: EvalSettings,
    margin: float,
    tracking_uri: str,
) -> dict[str, Any]:
    """Compare with the champion on this run's held-out pairs; move the alias if it wins.

    Runs under a Prefect concurrency slot per registered model, so two flow runs that
    finish together compare and move the alias one after the other.
    """
    with tracking_errors(tracking_uri, "promoting the model"), promotion_lock(name):
        return promote(name, version, heldout, heldout_path, eval_settings, margin, tracking_uri)


def promote(
    name: str,
    version: str,
    heldout: dict[str, Any],
    heldout_path: Path,
    eval_settings: EvalSettings,
    margin: float,
    tracking_uri: str,
) -> dict[str, Any]:
    client = get_client(tracking_uri)
    champion = current_champion(client, name)
    if champion is not None and str(champion.version) == str(version):
        return {"promoted": True, "reason": f"version {version} is already the champion", "champion_version": version}
    if champion is None:
        reference, reference_name = heldout["base"], "the starting model (no champion yet)"
    else:
        reference = evaluate_champion(champion, heldout_path, eval_settings, tracking_uri)
        reference_name = f"champion v{champion.version}"
    decision = decide_promotion(heldout["trained"], reference, reference_name, margin)
    apply_decision(client, name, version, decision)
    champion_version = version if decision.promoted else (str(champion.version) if champion else None)
    return {"promoted": decision.promoted, "reason": decision.reason, "champion_version": champion_version}


def apply_decision(client, name: str, version: str, decision: PromotionDecision) -> None:
    """Move the alias (if promoted) and record the decision on the version and in Prefect."""
    verdict = "promoted" if decision.promoted else "rejected"
    if decision.promoted:
        client.set_registered_model_alias(name, CHAMPION, version)
    client.set_model_version_tag(name, version, "promotion.decision", verdict)
    client.set_model_version_tag(name, version, "promotion.reason", decision.reason)
    get_run_logger().info("version %s %s: %s", version, verdict, decision.reason)
    create_markdown_artifact(
        f"# Promotion\n\nVersion **{version}**: {verdict}.\n\n{decision.reason}\n",
        key="promotion-decision",
        description="champion gate",
    )


def current_champion(client, name: str):
    """The version holding the `champion` alias, or None."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None


def evaluate_champion(champion, heldout_path: Path, eval_settings: EvalSettings, tracking_uri: str) -> dict[str, Any]:
    """Re-evaluate the champion's weights on this run's held-out pairs."""
    import mlflow
    import pandas as pd

    from simpo_core.eval.heldout import evaluate_model
    from simpo_core.models import load_model_and_tokenizer

    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=champion.source, tracking_uri=tracking_uri))
    model, tokenizer = load_model_and_tokenizer(str(model_dir_inside(local)))
    return evaluate_model(model, tokenizer, pd.read_parquet(heldout_path), eval_settings)


def model_dir_inside(downloaded: Path) -> Path:
    """The saved transformers folder inside a downloaded pyfunc model."""
    for config in sorted(downloaded.rglob("config.json")):
        if any(config.parent.glob("*.safetensors")):
            return config.parent
    raise FileNotFoundError(f"no saved model folder (config.json + safetensors) inside {downloaded}")


@contextmanager
def promotion_lock(name: str) -> Iterator[None]:
    """One promotion at a time per registered model, across flow runs on the same Prefect API."""
    from prefect.client.orchestration import get_client as prefect_client
    from prefect.concurrency.sync import concurrency

    limit = f"simpo-promote-{name}"
    with prefect_client(sync_client=True) as client:
        client.upsert_global_concurrency_limit_by_name(limit, 1)
    with concurrency(limit, occupy=1, timeout_seconds=6 * 3600, strict=True):
        yield
