"""`simpo deploy`: register the deployments of deployments/prefect.yaml with a Prefect server."""

import argparse

from flows.commands._common import not_available

HELP = "register the scheduled deployments of deployments/prefect.yaml with a Prefect server"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--name", default="--all", help="deployment name (default: all)")


def main(args: argparse.Namespace) -> int:
    return not_available("deploy", "scheduled retraining")
