"""Data tasks: check the source, validate it (streamed), audit length balance, split.

Each task calls the step's `simpo_core` function (the one the CLI calls too) and adds its
presentation: MLflow metrics and artifacts, Prefect artifacts and log lines.
"""

from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from simpo_core.audit.balance import AuditResult, audit
from simpo_core.audit.settings import AuditSettings
from simpo_core.data.loading import check_source
from simpo_core.data.settings import SplitSettings, ValidateSettings
from simpo_core.data.split import SplitResult, write_split
from simpo_core.data.validation import ValidationResult
from simpo_core.data.validation_stream import validate_source
from simpo_core.models import load_tokenizer
from tasks.retry import IO_TASK, ONE_SHOT_TASK
from tasks.tracking import get_client, log_metrics


@task(name="load-preferences", timeout_seconds=1800, **IO_TASK)
def load_preferences_task(source: str) -> str:
    """Check that the source can be read (a hub dataset is opened, filling the cache); retried on I/O errors."""
    kind = check_source(source)
    get_run_logger().info("data source %s (%s) is readable", source, kind)
    create_table_artifact([{"source": source, "kind": kind}], key="data-source", description="what will be read")
    return kind


@task(name="validate-preferences", timeout_seconds=3600, **ONE_SHOT_TASK)
def validate_preferences_task(
    source: str,
    settings: ValidateSettings,
    tokenizer_source: str,
    out_dir: Path,
    tracking_uri: str,
    run_id: str,
    trust_remote_code: bool = False,
) -> ValidationResult:
    """Stream the source through the schema; bad rows go to quarantine.jsonl with their reasons."""
    limits = settings.max_prompt_tokens or settings.max_response_tokens
    tokenizer = load_tokenizer(tokenizer_source, trust_remote_code) if limits else None
    result = validate_source(source, out_dir, settings, tokenizer=tokenizer)
    summary = result.summary
    client = get_client(tracking_uri)
    client.set_tag(run_id, "data.fingerprint", result.fingerprint)
    client.set_tag(run_id, "data.format", result.format)
    log_metrics(client, run_id, {f"data/{k}": summary[k] for k in ("total", "valid", "quarantined")})
    client.log_artifact(run_id, str(result.quarantine_path), "data")
    _log_dataset_lineage(result, run_id, tracking_uri)
    reasons = [{"reason": reason, "rows": count} for reason, count in summary["reasons"].items()]
    create_table_artifact(
        reasons or [{"reason": "none", "rows": 0}],
        key="quarantine-reasons",
        description=f"{summary['quarantined']} of {summary['total']} rows quarantined ({result.format} layout)",
    )
    get_run_logger().info("valid %d, quarantined %d of %d", summary["valid"], summary["quarantined"], summary["total"])
    return result


@task(name="audit-length-balance", timeout_seconds=3600, **ONE_SHOT_TASK)
def audit_length_balance_task(
    validated: ValidationResult,
    tokenizer_source: str,
    settings: AuditSettings,
    out_dir: Path,
    tracking_uri: str,
    run_id: str,
    trust_remote_code: bool = False,
) -> AuditResult:
    """Measure how well length alone predicts the label; warn, fail or rebalance."""
    result = audit(validated, load_tokenizer(tokenizer_source, trust_remote_code), settings, out_dir)
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
    valid_path: Path, settings: SplitSettings, out_dir: Path, tracking_uri: str, run_id: str
) -> SplitResult:
    """Split by prompt hash and write train.parquet and heldout.parquet."""
    result = write_split(valid_path, out_dir, settings)
    log_metrics(
        get_client(tracking_uri),
        run_id,
        {"data/train_pairs": result.train_pairs, "data/heldout_pairs": result.heldout_pairs},
    )
    get_run_logger().info("split: %d train pairs, %d held-out pairs", result.train_pairs, result.heldout_pairs)
    create_table_artifact(
        [{"split": "train", "pairs": result.train_pairs}, {"split": "held-out", "pairs": result.heldout_pairs}],
        key="holdout-split",
        description=f"prompt-hash split, salt {settings.split_salt!r}",
    )
    return result


PREVIEW_ROWS = 1000  # rows of valid.parquet shown with the dataset in MLflow


def _log_dataset_lineage(result: ValidationResult, run_id: str, tracking_uri: str) -> None:
    """Record the source and its fingerprint as an MLflow dataset input of the run."""
    import mlflow
    import pyarrow.parquet as pq
    from mlflow.data.code_dataset_source import CodeDatasetSource
    from mlflow.exceptions import MlflowException

    # A code source with tags works for every kind of source (files, hub ids, generated
    # data); the fingerprint is the dataset digest, so a changed export shows as new data.
    tags = {"source": result.source, "format": result.format, "fingerprint": result.fingerprint}
    batches = pq.ParquetFile(result.valid_path).iter_batches(batch_size=PREVIEW_ROWS, columns=["chosen", "rejected"])
    preview = next(batches, None)
    preview = preview.to_pandas() if preview is not None else _empty_preview()
    dataset = mlflow.data.from_pandas(
        preview,
        source=CodeDatasetSource(tags=tags),
        name=Path(result.source).name or result.source,
        digest=result.fingerprint[:36],
    )
    mlflow.set_tracking_uri(tracking_uri)
    with mlflow.start_run(run_id=run_id):
        try:
            mlflow.log_input(dataset, context="training")
        except MlflowException:
            # Two runs registering the same new dataset at once: one insert wins, and the
            # second attempt finds the dataset and links it.
            mlflow.log_input(dataset, context="training")


def _empty_preview() -> Any:
    import pandas as pd

    return pd.DataFrame({"chosen": pd.Series(dtype=str), "rejected": pd.Series(dtype=str)})
