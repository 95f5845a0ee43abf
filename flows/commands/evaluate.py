"""`simpo evaluate`: held-out preference metrics for a model, against its starting model.

    simpo evaluate --model DIR --data heldout.parquet --base tiny --out report/ --json

With `--base` both models are evaluated on the same pairs and the summary holds the
`heldout` block with `base`, `trained`, `delta` and `judge`. Without it the model is
evaluated alone: `trained` holds its block, and `base`, `delta` and `judge` are null.
"""

import argparse
import logging
import sys
from pathlib import Path

from flows.commands._common import add_json_flag, add_settings_arguments, emit_summary, settings_from_args

HELP = "evaluate a model on held-out preference pairs (optionally against its starting model)"
logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from simpo_core.eval.settings import EvalSettings

    parser.add_argument("--model", required=True, help="trained model: folder, hub id or 'tiny'")
    parser.add_argument("--data", required=True, help="held-out pairs: JSON/JSONL/Parquet/CSV file, folder or hub id")
    parser.add_argument(
        "--base",
        default=None,
        help="starting model to compare against (same tokenizer); defaults to the one recorded in a folder "
        "trained by simpo, else --model is evaluated alone",
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="write evaluation.json, evaluation.md and PNG plots here"
    )
    parser.add_argument(
        "--trust-remote-code", action="store_true", help="run code shipped with the models (off by default)"
    )
    names = [name for name in EvalSettings.model_fields if name != "trust_remote_code"]  # a flag, above
    add_settings_arguments(parser, EvalSettings, names)
    add_json_flag(parser)


def main(args: argparse.Namespace) -> int:
    from simpo_core.eval.saved import evaluate_saved, load_eval_pairs
    from simpo_core.eval.settings import EvalSettings
    from simpo_core.models import read_base_model

    settings = settings_from_args(EvalSettings, args)
    pairs = load_eval_pairs(args.data)
    base = args.base or read_base_model(args.model)  # a folder trained here names its starting model
    if base is None:
        logger.info(
            "no --base given: evaluating %s alone (pass --base SRC to compare with the starting model)", args.model
        )
    elif args.base is None:
        logger.info("comparing with the starting model recorded in %s: %s", args.model, base)
    result = evaluate_saved(args.model, pairs, settings, base_source=base, out_dir=args.out)
    print(result.markdown, file=sys.stderr)
    if args.json:
        emit_summary({**result.summary(), "model": args.model, "base_model": base, "data": args.data}, True)
    return 0
