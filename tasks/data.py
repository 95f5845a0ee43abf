"""Data tasks: check the source, validate it (streamed), audit length balance, split.

Each task calls the step's `simpo_core` function (the one the CLI calls too) and adds its
presentation: MLflow metrics and artifacts, Prefect artifacts and log lines.
"""

import json
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from simpo_core.audit.balance import AuditResult, audit
from simpo_core.audit.settings import AuditSettings
from simpo_core.data.loading import check_source
from simpo_core.data.mix import SourceSpec, combine_audits, mix_validated
from simpo_core.data.settings import SplitSettings, ValidateSettings
from simpo_core.data.split import SplitResult, write_split
from simpo_core.data.validation import ValidationResult
from simpo_core.data.validation_stream import validate_source
from simpo_core.models import load_tokenizer
from tasks.helpers.retry import IO_TASK, ONE_SHOT_TASK
from tasks.helpers.tracking import Tracking, log_dataset_input, log_metrics


@task(name="load-preferences", timeout_seconds=1800, **IO_TASK)
def load_preferences_task(source: str) -> str:
    """Check that the source can be read (a hub dataset is opened, filling the cache); retried on I/O errors."""
    kind = check_source(source)
    get_run_logger().info("data source %s (%s) is readable", source, kind)
    create_table_artifact([{"source": source, "kind": kind}], key="data-source", description="what will be read")
    return kind


@task(name="validate-preferences", timeout_seconds=3600, **ONE_SHOT_TASK)
def validate_preferences_task(
    spec: SourceSpec,
    settings: ValidateSettings,
    tokenizer_source: str,
    out_dir: Path,
    tracking: Tracking,
    trust_remote_code: bool = False,
    part_of_mix: bool = False,
) -> ValidationResult:
    """Stream one source through the schema; bad rows go to quarantine.jsonl with their reasons.

    The only source of a run is the run's data (`data/` metrics, the `data.fingerprint` tag);
    a source that is `part_of_mix` logs under `data/<name>/` and the mix step tags the run.
    """
    tokenizer = limit_tokenizer(settings, tokenizer_source, trust_remote_code)
    result = validate_source(spec.source, out_dir, settings, tokenizer=tokenizer)
    summary = result.summary
    name = spec.name if part_of_mix else ""
    client = publish_validation(result, tracking, name)
    if not part_of_mix:
        client.set_tag(tracking.run_id, "data.fingerprint", result.fingerprint)
        client.set_tag(tracking.run_id, "data.format", result.format)
        reasons = [{"reason": reason, "rows": count} for reason, count in summary["reasons"].items()]
        create_table_artifact(
            reasons or [{"reason": "none", "rows": 0}],
            key="quarantine-reasons",
            description=f"{summary['quarantined']} of {summary['total']} rows quarantined ({result.format} layout)",
        )
    get_run_logger().info(
        "%s: valid %d, quarantined %d of %d", spec.name, summary["valid"], summary["quarantined"], summary["total"]
    )
    return result


def limit_tokenizer(settings: ValidateSettings, tokenizer_source: str, trust_remote_code: bool) -> Any:
    """The tokenizer that counts tokens for the validation limits; None when no limit is set."""
    if not (settings.max_prompt_tokens or settings.max_response_tokens):
        return None
    return load_tokenizer(tokenizer_source, trust_remote_code)


def publish_validation(result: ValidationResult, tracking: Tracking, name: str = "") -> Any:
    """Log a validation's counts, quarantine file and dataset input to MLflow (under
    `data/<name>/` for one source of a mix); returns the MLflow client."""
    client = tracking.client()
    prefix = f"data/{name}/" if name else "data/"
    log_metrics(client, tracking.run_id, {f"{prefix}{k}": result.summary[k] for k in ("total", "valid", "quarantined")})
    client.log_artifact(tracking.run_id, str(result.quarantine_path), f"data/sources/{name}" if name else "data")
    _log_dataset_lineage(result, tracking, name=name or None)
    return client


@task(name="audit-length-balance", timeout_seconds=3600, **ONE_SHOT_TASK)
def audit_length_balance_task(
    validated: ValidationResult,
    tokenizer_source: str,
    settings: AuditSettings,
    out_dir: Path,
    tracking: Tracking,
    trust_remote_code: bool = False,
    name: str = "",
) -> AuditResult:
    """Measure how well length alone predicts the label; warn, fail or rebalance (for one
    source of a mix, `name`, before the mix: its rebalancing drops its own rows)."""
    result = audit(validated, load_tokenizer(tokenizer_source, trust_remote_code), settings, out_dir)
    publish_audit(result, tracking, "chosen/rejected length balance", name)
    return result


def publish_audit(result: AuditResult, tracking: Tracking, description: str, name: str = "") -> None:
    """Log an audit's figures and files to MLflow (under `audit/<name>/` for one source of a
    mix) and, for the audit the run trains on, its Markdown report as a Prefect artifact."""
    client = tracking.client()
    prefix = f"audit/{name}/" if name else "audit/"
    numbers = {k: v for k, v in result.report.items() if isinstance(v, (int, float))}
    log_metrics(client, tracking.run_id, {f"{prefix}{k}": v for k, v in numbers.items()})
    for path in result.paths.values():
        client.log_artifact(tracking.run_id, str(path), f"audit/sources/{name}" if name else "audit")
    if name:
        return
    markdown_path = result.paths.get("markdown")
    create_markdown_artifact(
        Path(markdown_path).read_text() if markdown_path else str(result.report),
        key="length-audit",
        description=description,
    )


@task(name="split-holdout", timeout_seconds=600, **ONE_SHOT_TASK)
def split_holdout_task(valid_path: Path, settings: SplitSettings, out_dir: Path, tracking: Tracking) -> SplitResult:
    """Split by prompt hash and write train.parquet and heldout.parquet."""
    result = write_split(valid_path, out_dir, settings)
    log_metrics(
        tracking.client(),
        tracking.run_id,
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


def _log_dataset_lineage(result: ValidationResult, tracking: Tracking, name: str | None = None) -> None:
    """Record the source and its fingerprint as an MLflow dataset input of the run (named
    `name`, or after the source)."""
    import pyarrow.parquet as pq

    tags = {"source": result.source, "format": result.format, "fingerprint": result.fingerprint}
    batches = pq.ParquetFile(result.valid_path).iter_batches(batch_size=PREVIEW_ROWS, columns=["chosen", "rejected"])
    preview = next(batches, None)
    preview = preview.to_pandas() if preview is not None else _empty_preview()
    label = name or Path(result.source).name or result.source
    log_dataset_input(tracking, preview, tags, label, result.fingerprint, "training")


def _empty_preview() -> Any:
    import pandas as pd

    return pd.DataFrame({"chosen": pd.Series(dtype=str), "rejected": pd.Series(dtype=str)})


# Several sources (`data.sources`): each is validated and audited on its own, then mixed.

SOURCES_TAG = "data.sources"  # JSON list of the mixed sources (lineage)
MAX_TAG_CHARS = 8000


@task(name="mix-sources", timeout_seconds=1800, **ONE_SHOT_TASK)
def mix_sources_task(
    parts: list[tuple[SourceSpec, ValidationResult]], out_dir: Path, tracking: Tracking
) -> ValidationResult:
    """Mix the validated sources by prompt hash into one valid.parquet; record what each gave."""
    validated, mix = mix_validated(parts, out_dir)
    client, run_id = tracking.client(), tracking.run_id
    client.set_tag(run_id, "data.fingerprint", validated.fingerprint)
    client.set_tag(run_id, "data.format", validated.format)
    described = json.dumps(
        [{**spec.model_dump(mode="json"), "fingerprint": result.fingerprint} for spec, result in parts]
    )
    if len(described) <= MAX_TAG_CHARS:
        client.set_tag(run_id, SOURCES_TAG, described)
    else:
        get_run_logger().warning("the sources list is too long for the %s tag; not recorded", SOURCES_TAG)
    summary = validated.summary
    counts = {f"data/{k}": summary[k] for k in ("total", "valid", "quarantined")}
    counts.update({f"data/{name}/used": c["used"] for name, c in mix.sources.items()})
    counts["data/mixed"] = mix.rows
    log_metrics(client, run_id, counts)
    client.log_artifact(run_id, str(validated.quarantine_path), "data")
    rows = [{"name": name, **{k: v for k, v in c.items() if k != "replay"}} for name, c in mix.sources.items()]
    create_table_artifact(rows, key="data-mix", description=f"{mix.rows} mixed rows (prompt-hash salt {mix.salt!r})")
    get_run_logger().info("mixed %d rows: %s", mix.rows, ", ".join(f"{r['name']} {r['used']}" for r in rows))
    return validated


@task(name="audit-mix", timeout_seconds=3600, **ONE_SHOT_TASK)
def audit_mix_task(
    mixed: ValidationResult,
    per_source: dict[str, AuditResult],
    tokenizer_source: str,
    settings: AuditSettings,
    out_dir: Path,
    tracking: Tracking,
    trust_remote_code: bool = False,
) -> AuditResult:
    """Measure the mixed rows (each source already had its policy applied) and combine the reports."""
    # Policy warn: measuring the mix drops nothing and fails nothing (the sources had their policy).
    tokenizer = load_tokenizer(tokenizer_source, trust_remote_code)
    measured = audit(mixed, tokenizer, settings.model_copy(update={"policy": "warn"}), out_dir)
    reports = {name: result.report for name, result in per_source.items()}
    measured.report = combine_audits(measured.report, reports, settings.policy)
    publish_audit(measured, tracking, "chosen/rejected length balance of the mixed rows")
    return measured
