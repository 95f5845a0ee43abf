"""`simpo evaluate`: held-out preference metrics for a model."""

import argparse

from flows.commands._common import add_json_flag, not_available

HELP = "evaluate a model on held-out preference pairs"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="model folder, hub id or 'tiny'")
    parser.add_argument("--data", required=True, help="held-out pairs: file, folder or hub id")
    add_json_flag(parser)


def main(args: argparse.Namespace) -> int:
    return not_available("evaluate", "held-out evaluation")
