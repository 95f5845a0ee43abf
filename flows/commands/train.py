"""`simpo train`: SimPO training only (what the `train-simpo` task runs)."""

import argparse
from pathlib import Path

from flows.commands._common import not_available

HELP = "train with SimPO from a YAML config (what the train-simpo task runs)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, required=True, help="YAML training config")
    parser.add_argument("--resume", action="store_true", help="continue from the newest complete checkpoint")


def main(args: argparse.Namespace) -> int:
    return not_available("train", "the SimPO trainer")
