"""`simpo run`: the whole retraining flow `simpo-retrain`."""

import argparse
from pathlib import Path

from flows.commands._common import add_json_flag, not_available

HELP = "run the whole retraining flow (load, validate, audit, split, train, evaluate, register, promote)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="YAML file with flow parameters")
    parser.add_argument("--data", help="data source: file, folder, hub id or 'synthetic' (default)")
    parser.add_argument("--model", help="model source: folder, hub id or 'tiny' (default)")
    parser.add_argument("--output-dir", type=Path, help="where run outputs go")
    parser.add_argument("--tracking-uri", help="MLflow tracking URI (default: sqlite under the working directory)")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override one parameter by dotted path, e.g. train.max_steps=50 (repeatable)",
    )
    add_json_flag(parser)


def main(args: argparse.Namespace) -> int:
    return not_available("run", "the retraining flow")
