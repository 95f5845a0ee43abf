"""`simpo validate`: schema-check preference data and quarantine bad rows with reasons."""

import argparse
from pathlib import Path

from flows.commands._common import add_json_flag, not_available

HELP = "validate preference data; write DIR/valid.parquet and DIR/quarantine.jsonl"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", help="file, folder or hub id")
    parser.add_argument("--out", type=Path, default=Path("validated"), help="output folder")
    add_json_flag(parser)


def main(args: argparse.Namespace) -> int:
    return not_available("validate", "data validation")
