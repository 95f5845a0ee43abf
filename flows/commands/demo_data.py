"""`simpo demo-data`: write the embedded synthetic preference pairs."""

import argparse
import logging
from pathlib import Path

from flows.commands._common import add_json_flag, emit_summary

HELP = "write synthetic preference pairs (flat JSONL) with a learnable rule and a chosen length bias"
logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="JSONL file to write")
    parser.add_argument("--n", type=int, default=2000, help="number of pairs (default 2000)")
    parser.add_argument(
        "--length-bias",
        type=float,
        default=0.0,
        help="in [-1, 1]: 0 = chosen longer in about half the pairs, 1 = always, -1 = never",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    add_json_flag(parser)


def main(args: argparse.Namespace) -> int:
    from simpo_core.data.synthetic import generate_pairs, write_jsonl
    from simpo_core.errors import ConfigError

    try:
        rows = generate_pairs(args.n, args.length_bias, args.seed)
    except ValueError as error:
        raise ConfigError(f"{error}; fix --n or --length-bias") from error
    path = write_jsonl(rows, args.out)
    chosen_longer = sum(len(row["chosen"]) > len(row["rejected"]) for row in rows)
    logger.info("wrote %d pairs to %s", len(rows), path)
    emit_summary(
        {
            "path": str(path),
            "pairs": len(rows),
            "chosen_longer_fraction": chosen_longer / len(rows) if rows else 0.0,
            "length_bias": args.length_bias,
            "seed": args.seed,
        },
        args.json,
    )
    return 0
