"""Helpers shared by the command modules."""

import argparse
import json
import sys
from typing import Any

from simpo_core.errors import SimpoError


def add_json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON summary as the last line of stdout")


def emit_summary(summary: dict[str, Any], as_json: bool) -> None:
    """Print the summary: one JSON line on stdout, or `key: value` lines on stderr."""
    if as_json:
        print(json.dumps(summary, default=str), flush=True)
        return
    for key, value in summary.items():
        print(f"{key}: {value}", file=sys.stderr)


def not_available(command: str, feature: str) -> int:
    """Refuse a command whose feature is not built yet, clearly and with a non-zero exit."""
    raise SimpoError(f"`simpo {command}` is not available in this version: {feature} is not built yet")
