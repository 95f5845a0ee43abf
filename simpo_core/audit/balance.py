"""Length-balance audit: does "the longer response wins" predict the preference?

Annotators and reward models tend to prefer longer answers, so a model trained on such data
learns length instead of quality. The audit measures that with the model's own tokenizer and
applies a policy: `warn` (log it), `fail` (raise with the numbers) or `rebalance` (drop the
fewest pairs that bring the chosen-longer fraction within 0.5 ± tolerance; every dropped row
is returned with reason `length_rebalance`, to be appended to the quarantine).

It also counts the pairs the training limits would cut (`truncation`): above
`max_truncated_fraction` it warns, and policy `fail` fails.
"""

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from simpo_core.audit.metrics import length_report, rebalance_drops
from simpo_core.audit.settings import AuditSettings
from simpo_core.audit.truncation import (
    TRUNCATION_FIX,
    TruncationLimits,
    limits_of,
    measure_pairs,
    truncation_figures,
    truncation_report,
)
from simpo_core.data.readers import CHUNK_ROWS
from simpo_core.data.validation import ValidationResult, append_quarantine
from simpo_core.errors import DataError

logger = logging.getLogger(__name__)

REBALANCE_REASON = "length_rebalance"


@dataclass
class AuditResult:
    """The audit report (the `simpo audit` JSON fields and more) and the report files written
    (`json`, `markdown`, `png`) when an output folder was given. `frame` (rows kept) and
    `removed` (rows dropped) are set by the in-memory `audit_length_balance`; the streamed
    `audit` step moves the dropped rows between its files instead and leaves both None."""

    report: dict[str, Any]
    frame: pd.DataFrame | None
    removed: pd.DataFrame | None
    paths: dict[str, Path] = field(default_factory=dict)


def audit(
    validated: ValidationResult, tokenizer: Any, settings: AuditSettings | None = None, out_dir: Path | None = None
) -> AuditResult:
    """The audit step on validated data, in memory bounded by a chunk of rows: audit
    `valid.parquet`; a rebalance moves its dropped rows to `quarantine.jsonl` (reason
    `length_rebalance`) and rewrites `valid.parquet`, so every input row stays in exactly
    one of the two files. Per row only its two token counts, three truncation flags and a
    hash key are kept.

    `simpo audit` and the flow's `audit-length-balance` task both call this.

    Args:
        validated: the validation step's result (its files are updated in place).
        tokenizer: the model's tokenizer; lengths are response tokens.
        settings: threshold, policy, tolerance, seed, training limits and the truncated share
            allowed (`AuditSettings`).
        out_dir: write `length_audit.json`, `.md` and `.png` there.

    Raises:
        DataError: policy `fail` and the data is flagged (length bias or too many pairs
            truncated), or rebalancing is impossible.
    """
    settings = settings or AuditSettings()
    chosen, rejected, order, flags = _stream_lengths(
        validated.valid_path, tokenizer, settings.seed, limits_of(settings)
    )
    report, drops, paths = _assess(chosen, rejected, order, flags, settings, out_dir)
    if len(drops):
        _move_to_quarantine(validated, drops)
        logger.info("rebalanced: %d pairs moved to %s", len(drops), validated.quarantine_path)
    return AuditResult(report, None, None, paths)


def audit_length_balance(
    frame: pd.DataFrame, tokenizer: Any, settings: AuditSettings | None = None, out_dir: Path | None = None
) -> AuditResult:
    """Measure the length bias of `frame` (canonical rows, in memory) and apply the policy.

    Args:
        frame: valid canonical rows (`prompt` messages, `chosen`, `rejected` strings).
        tokenizer: the model's tokenizer; lengths are response tokens, no special tokens.
        settings: `flagged` when `length_bias_strength` exceeds `threshold`; `policy` warn,
            fail or rebalance; rebalance to a chosen-longer fraction within 0.5 ± `tolerance`;
            `seed` picks which pairs rebalancing drops (same seed and data, same drops, in
            any row order); the training limits and `max_truncated_fraction` (the truncation count).
        out_dir: write `length_audit.json`, `.md` and `.png` there.

    Returns:
        An `AuditResult` with the rows kept and dropped; `report["removed"]` counts the latter.

    Raises:
        DataError: policy `fail` and the data is flagged (length bias or too many pairs
            truncated), or rebalancing is impossible.
    """
    settings = settings or AuditSettings()
    frame = frame.reset_index(drop=True)
    chosen, rejected, flags = measure_pairs(frame, tokenizer, limits_of(settings))
    report, drops, paths = _assess(chosen, rejected, pair_order(frame, settings.seed), flags, settings, out_dir)
    kept_mask = np.ones(len(frame), dtype=bool)
    kept_mask[drops] = False
    removed = frame.iloc[drops].assign(reason=REBALANCE_REASON).reset_index(drop=True)
    return AuditResult(report, frame[kept_mask].reset_index(drop=True), removed, paths)


def _assess(
    chosen: np.ndarray,
    rejected: np.ndarray,
    order: np.ndarray,
    flags: np.ndarray,
    settings: AuditSettings,
    out_dir: Path | None,
) -> tuple[dict[str, Any], np.ndarray, dict[str, Path]]:
    """The report, the positions a rebalance drops (sorted) and the report files; applies the
    policy. `flags` `(N, 3)`: which parts of each pair training cuts (`truncation_flags`)."""
    report = length_report(chosen, rejected)
    flagged = report["length_bias_strength"] > settings.threshold  # either direction: longer or shorter wins
    report.update(
        {
            "threshold": settings.threshold,
            "flagged": bool(flagged),
            "policy": settings.policy,
            "tolerance": settings.tolerance,
            "removed": 0,
        }
    )
    drops = np.array([], dtype=np.int64)
    kept = np.ones(len(chosen), dtype=bool)
    if settings.policy == "rebalance":
        drops = _rebalance(chosen, rejected, order, settings.tolerance)
        kept[drops] = False
        after = length_report(chosen[kept], rejected[kept])
        report["removed"] = len(drops)
        report["after"] = {
            key: after[key]
            for key in (
                "pairs",
                "chosen_longer_fraction",
                "length_only_accuracy",
                "length_bias_strength",
                "point_biserial",
            )
        }
    # Counted on the pairs training will see (after a rebalance); flattened for the run's metrics.
    truncated = truncation_report(flags[kept], limits_of(settings), settings.max_truncated_fraction)
    report.update(truncated=truncated, truncated_pairs=truncated["pairs"], truncated_fraction=truncated["fraction"])
    paths = _write_reports(report, chosen, rejected, out_dir) if out_dir is not None else {}
    _apply_policy(report)
    _apply_truncation_policy(report)
    return report, drops, paths


def _stream_lengths(
    valid_path: Path, tokenizer: Any, seed: int, limits: TruncationLimits
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Token counts of chosen and rejected, the seeded pair keys and the truncation flags
    `(N, 3)`, read chunk by chunk."""
    import pyarrow.parquet as pq

    chosen, rejected, order, flags = [], [], [], []
    columns = ["prompt", "chosen", "rejected"]
    for batch in pq.ParquetFile(valid_path).iter_batches(batch_size=CHUNK_ROWS, columns=columns):
        pairs = batch.select(["chosen", "rejected"]).to_pandas()  # as the in-memory audit hashes them
        pairs["prompt"] = pd.Series(batch.column("prompt").to_pylist(), index=pairs.index, dtype=object)
        measured = measure_pairs(pairs, tokenizer, limits)
        for parts, part in zip((chosen, rejected, flags), measured):
            parts.append(part)
        order.append(pair_order(pairs, seed))
    if not chosen:
        empty = np.array([], dtype=np.int64)
        return empty, empty, np.array([], dtype=np.uint64), np.zeros((0, 3), dtype=bool)
    return np.concatenate(chosen), np.concatenate(rejected), np.concatenate(order), np.concatenate(flags)


def _move_to_quarantine(validated: ValidationResult, drops: np.ndarray) -> None:
    """Rewrite `valid.parquet` without the rows at `drops`, appending those to the quarantine."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    source = pq.ParquetFile(validated.valid_path)
    dropped = np.zeros(source.metadata.num_rows, dtype=bool)
    dropped[drops] = True
    partial = validated.valid_path.with_name(validated.valid_path.name + ".partial")
    with pq.ParquetWriter(partial, source.schema_arrow) as writer:
        start = 0
        for batch in source.iter_batches(batch_size=CHUNK_ROWS):
            mask = dropped[start : start + batch.num_rows]
            start += batch.num_rows
            writer.write_batch(batch.filter(pa.array(~mask)))
            if mask.any():
                append_quarantine(validated.quarantine_path, batch.filter(pa.array(mask)).to_pandas(), REBALANCE_REASON)
    source.close()
    partial.replace(validated.valid_path)  # atomic: the valid file is never half-written


def _rebalance(chosen: np.ndarray, rejected: np.ndarray, order: np.ndarray, tolerance: float) -> np.ndarray:
    try:
        return rebalance_drops(chosen, rejected, order, tolerance)
    except ValueError as error:
        raise DataError(f"cannot rebalance lengths: {error}; use policy warn or fail, or fix the data") from error


def pair_order(frame: pd.DataFrame, seed: int) -> np.ndarray:
    """A seeded pseudo-random key per pair, from its content (not its position), uint64 (N,)."""
    hash_key = hashlib.blake2b(str(seed).encode(), digest_size=8).hexdigest()  # 16 characters
    return pd.util.hash_pandas_object(frame[["chosen", "rejected"]], index=False, hash_key=hash_key).to_numpy()


def _apply_policy(report: dict[str, Any]) -> None:
    figures = (
        f"{report['bias_direction']} wins: length_only_accuracy={report['length_only_accuracy']:.3f}, "
        f"strength {report['length_bias_strength']:.3f} (threshold {report['threshold']}), "
        f"chosen_longer_fraction={report['chosen_longer_fraction']:.3f}, "
        f"point_biserial={report['point_biserial']:.3f} over {report['pairs']} pairs"
    )
    if not report["flagged"]:
        logger.info("length balance ok: %s", figures)
    elif report["policy"] == "fail":
        raise DataError(
            f"length bias: {figures}. Length alone predicts the preference; rebalance the data "
            "(--policy rebalance), raise --threshold, or use --policy warn to train anyway."
        )
    elif report["policy"] == "rebalance":
        logger.warning("length bias: %s; rebalanced by dropping %d pairs", figures, report["removed"])
    else:
        logger.warning("length bias: %s (policy warn: training will see it)", figures)


def _apply_truncation_policy(report: dict[str, Any]) -> None:
    truncated = report["truncated"]
    if not truncated["flagged"]:
        if truncated["pairs"]:
            logger.info("truncation: training will cut %d of %d pairs", truncated["pairs"], report["pairs"])
        return
    figures = truncation_figures(truncated)
    if report["policy"] == "fail":
        raise DataError(f"truncation: {figures}. Training would learn from cut text; {TRUNCATION_FIX}.")
    logger.warning("truncation: %s; %s", figures, TRUNCATION_FIX)


def _write_reports(report: dict[str, Any], chosen: np.ndarray, rejected: np.ndarray, out_dir: Path) -> dict[str, Path]:
    from simpo_core.audit.report import write_audit_reports

    return write_audit_reports(report, chosen, rejected, Path(out_dir))
