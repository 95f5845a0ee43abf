"""The `simpo` command line.

Each command lives in `flows/commands/<name>.py` with `HELP`, `add_arguments(parser)` and
`main(args) -> int`. Command modules import heavy libraries (torch, prefect, mlflow) only
inside `main`, so `simpo --help` and `simpo validate` start fast.

With `--json` the last line of stdout is one JSON object, on failure too:
`{"ok": false, "error": ..., "failed_step": ..., ...}` (`flows.commands._failure`).
"""

import argparse
import json
import logging
import sys
from importlib import import_module
from typing import NoReturn

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
    "generate": "generate",
}


class Parser(argparse.ArgumentParser):
    """argparse that keeps a usage error's message for the `--json` failure summary."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        text = f"{self.prog}: error: {message}"
        print(text, file=sys.stderr)
        stop = SystemExit(2)
        stop.usage_error = text
        raise stop


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
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
    argv = sys.argv[1:] if argv is None else argv
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as stop:
        if stop.code and "--json" in argv:  # a usage error; --help exits 0
            text = getattr(stop, "usage_error", "invalid arguments")
            print(json.dumps({"ok": False, "error": text, "failed_step": "arguments"}), flush=True)
        raise
    configure_logging(args.verbose)
    apply_process_defaults()
    as_json = getattr(args, "json", False)
    try:
        return int(args.handler(args) or 0)
    except SimpoError as error:
        print(f"error: {error}", file=sys.stderr)
        emit_failure(error, args.command, as_json)
        return 1
    except KeyboardInterrupt as error:
        print("interrupted", file=sys.stderr)
        emit_failure(error, args.command, as_json)
        return 130
    except Exception as error:  # a bug or an outage: the traceback follows on stderr
        emit_failure(error, args.command, as_json)
        raise


def emit_failure(error: BaseException, command: str, as_json: bool) -> None:
    """With --json, the failure summary as the last line of stdout."""
    if as_json:
        from flows.commands._failure import failure_summary

        print(json.dumps(failure_summary(error, command), default=str), flush=True)


if __name__ == "__main__":
    sys.exit(main())
