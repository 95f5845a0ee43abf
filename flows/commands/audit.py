"""`simpo audit`: measure chosen/rejected length balance (and rebalance if asked)."""

import argparse
import logging
from pathlib import Path

from flows.commands._common import add_json_flag, emit_summary

HELP = "audit chosen/rejected length balance with a model's tokenizer"
FORMATS = ("flat", "conversational", "sharegpt", "hh-rlhf")
POLICIES = ("warn", "fail", "rebalance")
logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", help="file, folder, hub id name[:config][@split], or synthetic[:n=N,bias=X,seed=S]")
    parser.add_argument("--tokenizer", default="tiny", help="tokenizer source (default 'tiny')")
    parser.add_argument("--out", type=Path, default=Path("audit"), help="output folder (default ./audit)")
    parser.add_argument("--policy", choices=POLICIES, default="warn", help="what to do when flagged (default warn)")
    parser.add_argument("--threshold", type=float, default=0.65, help="flag when length-only accuracy exceeds this")
    parser.add_argument(
        "--tolerance", type=float, default=0.05, help="rebalance to a chosen-longer fraction of 0.5 ± this"
    )
    parser.add_argument("--seed", type=int, default=0, help="which pairs rebalancing drops (default 0)")
    parser.add_argument("--format", choices=FORMATS, default=None, help="force a layout instead of detecting it")
    parser.add_argument("--max-invalid-fraction", type=float, default=0.05, help="validation limit (default 0.05)")
    add_json_flag(parser)


def main(args: argparse.Namespace) -> int:
    from simpo_core.audit.balance import audit_length_balance
    from simpo_core.data.loading import load_preferences
    from simpo_core.data.validation import append_quarantine, validate_preferences, write_valid
    from simpo_core.models import load_tokenizer

    tokenizer = load_tokenizer(args.tokenizer)
    validation = validate_preferences(
        load_preferences(args.source, format=args.format), args.out, max_invalid_fraction=args.max_invalid_fraction
    )
    result = audit_length_balance(
        validation.valid,
        tokenizer,
        threshold=args.threshold,
        policy=args.policy,
        tolerance=args.tolerance,
        seed=args.seed,
        out_dir=args.out,
    )
    if len(result.removed):
        # Keep the invariant: every row is in valid.parquet or, with its reason, in quarantine.jsonl.
        append_quarantine(validation.quarantine_path, result.removed, "length_rebalance")
        write_valid(result.frame, validation.valid_path)
        logger.info("rebalanced: %d pairs moved to %s", len(result.removed), validation.quarantine_path)
    summary = {key: value for key, value in result.report.items() if key != "buckets"}
    summary.update(
        {
            "paths": {kind: str(path) for kind, path in result.paths.items()},
            "valid_path": str(validation.valid_path),
            "quarantine_path": str(validation.quarantine_path),
            "validation": {k: validation.summary[k] for k in ("total", "valid", "quarantined", "reasons")},
        }
    )
    emit_summary(summary, args.json)
    return 0
