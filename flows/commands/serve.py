"""`simpo serve`: serve the scheduled retraining deployments from this process."""

import argparse

from flows.commands._common import not_available

HELP = "serve the scheduled retraining deployment from this process (see deployments/)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cron", default="0 3 * * *", help="cron schedule (default: daily at 03:00)")


def main(args: argparse.Namespace) -> int:
    return not_available("serve", "scheduled retraining")
