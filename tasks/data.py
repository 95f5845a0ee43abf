"""Data tasks: load, validate, audit and split the preference pairs."""

from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from simpo_core.audit.balance import audit_length_balance
from simpo_core.data.loading import LoadResult, load_preferences
from simpo_core.data.split import split_holdout
from simpo_core.data.validation import append_quarantine, validate_preferences
from simpo_core.models import load_tokenizer
from tasks.retry import IO_TASK, ONE_SHOT_TASK
from tasks.tracking import get_client, log_metrics


@task(name="load-preferences", timeout_seconds=3600, **IO_TASK)
def load_preferences_task(source: str, format: str | None, tracking_uri: str, run_id: str) -> LoadResult:
    """Read the source in any supported layout; every record becomes one row."""
    loaded = load_preferences(source, format)
    get_run_logger().info("read %d records (%s layout) from %s", loaded.total, loaded.format, source)
    client = get_client(tracking_uri)
    client.set_tag(run_id, "data.fingerprint", loaded.fingerprint)
    client.set_tag(run_id, "data.format", loaded.format)
    create_table_artifact(
        [{"source": source, "layout": loaded.format, "records": loaded.total, "fingerprint": loaded.fingerprint[:16]}],
        key="loaded-preferences",
        description="what was read",
    )
    return loaded


@task(name="validate-preferences", timeout_seconds=3600, **ONE_SHOT_TASK)
def validate_preferences_task(
    loaded: LoadResult, out_dir: Path, max_invalid_fraction: float, tracking_uri: str, run_id: str
) -> Any:
    """Schema-check every row; bad rows go to quarantine.jsonl with their reasons."""
    result = validate_preferences(loaded, out_dir, max_invalid_fraction=max_invalid_fraction)
    summary = result.summary
    client = get_client(tracking_uri)
    log_metrics(client, run_id, {f"data/{k}": summary[k] for k in ("total", "valid", "quarantined")})
    client.log_artifact(run_id, str(result.quarantine_path), "data")
    _log_dataset_lineage(result.valid, loaded, run_id, tracking_uri)
    reasons = [{"reason": reason, "rows": count} for reason, count in summary["reasons"].items()]
    create_table_artifact(
        reasons or [{"reason": "none", "rows": 0}],
        key="quarantine-reasons",
        description=f"{summary['quarantined']} of {summary['total']} rows quarantined",
    )
    get_run_logger().info("valid %d, quarantined %d of %d", summary["valid"], summary["quarantined"], summary["total"])
    return result


@task(name="audit-length-balance", timeout_seconds=3600, **ONE_SHOT_TASK)
def audit_length_balance_task(
    validated: Any, tokenizer_source: str, audit: dict[str, Any], out_dir: Path, tracking_uri: str, run_id: str
) -> Any:
    """Measure how well length alone predicts the label; warn, fail or rebalance."""
    tokenizer = load_tokenizer(tokenizer_source)
    result = audit_length_balance(validated.valid, tokenizer, out_dir=out_dir, **audit)
    if len(result.removed):
        append_quarantine(validated.quarantine_path, result.removed, "length_rebalance")
    client = get_client(tracking_uri)
    numbers = {k: v for k, v in result.report.items() if isinstance(v, (int, float))}
    log_metrics(client, run_id, {f"audit/{k}": v for k, v in numbers.items()})
    for path in result.paths.values():
        client.log_artifact(run_id, str(path), "audit")
    markdown_path = result.paths.get("markdown")
    create_markdown_artifact(
        Path(markdown_path).read_text() if markdown_path else str(result.report),
        key="length-audit",
        description="chosen/rejected length balance",
    )
    return result


@task(name="split-holdout", timeout_seconds=600, **ONE_SHOT_TASK)
def split_holdout_task(
    frame: Any, heldout_fraction: float, salt: str, out_dir: Path, tracking_uri: str, run_id: str
) -> dict[str, str]:
    """Split by prompt hash and write train.parquet and heldout.parquet."""
    train, heldout = split_holdout(frame, heldout_fraction, salt)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"train": out_dir / "train.parquet", "heldout": out_dir / "heldout.parquet"}
    train.to_parquet(paths["train"], index=False)
    heldout.to_parquet(paths["heldout"], index=False)
    log_metrics(get_client(tracking_uri), run_id, {"data/train_pairs": len(train), "data/heldout_pairs": len(heldout)})
    get_run_logger().info("split: %d train pairs, %d held-out pairs", len(train), len(heldout))
    create_table_artifact(
        [{"split": "train", "pairs": len(train)}, {"split": "held-out", "pairs": len(heldout)}],
        key="holdout-split",
        description=f"prompt-hash split, salt {salt!r}",
    )
    return {name: str(path) for name, path in paths.items()}


def _log_dataset_lineage(frame: Any, loaded: LoadResult, run_id: str, tracking_uri: str) -> None:
    """Record the source and its fingerprint as an MLflow dataset input of the run."""
    import mlflow
    from mlflow.data.code_dataset_source import CodeDatasetSource

    # A code source with tags works for every kind of source (files, hub ids, generated
    # data); the fingerprint is the dataset digest, so a changed export shows as new data.
    source = CodeDatasetSource(
        tags={"source": loaded.source, "format": loaded.format, "fingerprint": loaded.fingerprint}
    )
    preview = frame[["chosen", "rejected"]].head(1000)
    dataset = mlflow.data.from_pandas(
        preview, source=source, name=Path(loaded.source).name or loaded.source, digest=loaded.fingerprint[:36]
    )
    mlflow.set_tracking_uri(tracking_uri)
    with mlflow.start_run(run_id=run_id):
        mlflow.log_input(dataset, context="training")
