"""Length-balance audit: does "the longer response wins" predict the preference?

Annotators and reward models tend to prefer longer answers, so a model trained on such data
learns length instead of quality. The audit measures that with the model's own tokenizer and
applies a policy: `warn` (log it), `fail` (raise with the numbers) or `rebalance` (drop the
fewest pairs that bring the chosen-longer fraction within 0.5 ± tolerance; every dropped row
is returned with reason `length_rebalance`, to be appended to the quarantine).
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
from simpo_core.data.tokens import count_tokens
from simpo_core.data.validation import ValidationResult, append_quarantine, write_valid
from simpo_core.errors import DataError

logger = logging.getLogger(__name__)

REBALANCE_REASON = "length_rebalance"


@dataclass
class AuditResult:
    """The audit report (the `simpo audit` JSON fields and more), the rows kept, the rows dropped and the
    report files written (`json`, `markdown`, `png`) when an output folder was given."""

    report: dict[str, Any]
    frame: pd.DataFrame
    removed: pd.DataFrame
    paths: dict[str, Path] = field(default_factory=dict)


def audit(
    validated: ValidationResult, tokenizer: Any, settings: AuditSettings | None = None, out_dir: Path | None = None
) -> AuditResult:
    """The audit step on validated data: audit `valid.parquet`; a rebalance moves its dropped
    rows to `quarantine.jsonl` (reason `length_rebalance`) and rewrites `valid.parquet`, so
    every input row stays in exactly one of the two files.

    `simpo audit` and the flow's `audit-length-balance` task both call this.

    Args:
        validated: the validation step's result (its files are updated in place).
        tokenizer: the model's tokenizer; lengths are response tokens.
        settings: threshold, policy, tolerance and seed (`AuditSettings`).
        out_dir: write `length_audit.json`, `.md` and `.png` there.

    Raises:
        DataError: policy `fail` and the data is flagged, or rebalancing is impossible.
    """
    frame = validated.valid if validated.valid is not None else pd.read_parquet(validated.valid_path)
    result = audit_length_balance(frame, tokenizer, settings, out_dir)
    if len(result.removed):
        append_quarantine(validated.quarantine_path, result.removed, REBALANCE_REASON)
        write_valid(result.frame, validated.valid_path)
        logger.info("rebalanced: %d pairs moved to %s", len(result.removed), validated.quarantine_path)
    return result


def audit_length_balance(
    frame: pd.DataFrame, tokenizer: Any, settings: AuditSettings | None = None, out_dir: Path | None = None
) -> AuditResult:
    """Measure the length bias of `frame` (canonical rows) and apply the policy.

    Args:
        frame: valid canonical rows (`chosen`, `rejected` strings).
        tokenizer: the model's tokenizer; lengths are response tokens, no special tokens.
        settings: `flagged` when `length_only_accuracy` exceeds `threshold`; `policy` warn,
            fail or rebalance; rebalance to a chosen-longer fraction within 0.5 ± `tolerance`;
            `seed` picks which pairs rebalancing drops (same seed and data, same drops, in
            any row order).
        out_dir: write `length_audit.json`, `.md` and `.png` there.

    Returns:
        An `AuditResult`; `report["removed"]` counts the dropped rows.

    Raises:
        DataError: policy `fail` and the data is flagged, or rebalancing is impossible.
    """
    settings = settings or AuditSettings()
    threshold, policy, tolerance, seed = settings.threshold, settings.policy, settings.tolerance, settings.seed
    frame = frame.reset_index(drop=True)
    chosen = count_tokens(frame["chosen"], tokenizer)
    rejected = count_tokens(frame["rejected"], tokenizer)
    report = length_report(chosen, rejected)
    flagged = report["length_bias_strength"] > threshold  # either direction: longer or shorter wins
    report.update(
        {"threshold": threshold, "flagged": bool(flagged), "policy": policy, "tolerance": tolerance, "removed": 0}
    )
    drops = (
        _rebalance(frame, chosen, rejected, tolerance, seed) if policy == "rebalance" else np.array([], dtype=np.int64)
    )
    kept_mask = np.ones(len(frame), dtype=bool)
    kept_mask[drops] = False
    removed = frame.iloc[drops].assign(reason=REBALANCE_REASON).reset_index(drop=True)
    kept = frame[kept_mask].reset_index(drop=True)
    if policy == "rebalance":
        after = length_report(chosen[kept_mask], rejected[kept_mask])
        report["removed"] = len(removed)
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
    paths = _write_reports(report, chosen, rejected, out_dir) if out_dir is not None else {}
    _apply_policy(report)
    return AuditResult(report, kept, removed, paths)


def _rebalance(
    frame: pd.DataFrame, chosen: np.ndarray, rejected: np.ndarray, tolerance: float, seed: int
) -> np.ndarray:
    try:
        return rebalance_drops(chosen, rejected, pair_order(frame, seed), tolerance)
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


def _write_reports(report: dict[str, Any], chosen: np.ndarray, rejected: np.ndarray, out_dir: Path) -> dict[str, Path]:
    from simpo_core.audit.report import write_audit_reports

    return write_audit_reports(report, chosen, rejected, Path(out_dir))
