"""`simpo audit`: measure chosen/rejected length balance."""

import argparse
from pathlib import Path

from flows.commands._common import add_json_flag, not_available

HELP = "audit chosen/rejected length balance with a model's tokenizer"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", help="file, folder or hub id")
    parser.add_argument("--tokenizer", default="tiny", help="tokenizer source (default 'tiny')")
    parser.add_argument("--out", type=Path, default=Path("audit"), help="output folder")
    add_json_flag(parser)


def main(args: argparse.Namespace) -> int:
    return not_available("audit", "the length-balance audit")
