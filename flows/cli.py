"""The `simpo` command line.

Each command lives in `flows/commands/<name>.py` with `HELP`, `add_arguments(parser)` and
`main(args) -> int`. Command modules import heavy libraries (torch, prefect, mlflow) only
inside `main`, so `simpo --help` and `simpo validate` start fast.
"""

import argparse
import logging
import sys
from importlib import import_module

from simpo_core import __version__
from simpo_core.env import apply_process_defaults
from simpo_core.errors import SimpoError

# command name -> module under flows.commands
COMMANDS = {
    "run": "run",
    "validate": "validate",
    "audit": "audit",
    "train": "train",
    "evaluate": "evaluate",
    "demo-data": "demo_data",
    "sft": "sft",
    "rollback": "rollback",
    "registry": "registry",
    "serve": "serve",
    "deploy": "deploy",
    "sweep": "sweep",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="simpo",
        description="SimPO preference training pipeline: validate, audit, train, evaluate, promote.",
    )
    parser.add_argument("--version", action="version", version=f"simpo-pipeline {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging on stderr")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module_name in COMMANDS.items():
        module = import_module(f"flows.commands.{module_name}")
        sub = subparsers.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(sub)
        sub.set_defaults(handler=module.main)
    return parser


def configure_logging(verbose: bool) -> None:
    """Human-readable progress on stderr; stdout stays free for the --json summary."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    # Per-request HTTP lines from the Prefect and MLflow clients drown the progress.
    for noisy in ("httpx", "httpcore", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose)
    apply_process_defaults()
    try:
        return int(args.handler(args) or 0)
    except SimpoError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
