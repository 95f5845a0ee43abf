"""`simpo serve`: run the retraining flow on a cron schedule from this process."""

import argparse
from pathlib import Path

HELP = "serve scheduled retraining from this process (flow.serve with a cron; no work pool needed)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cron", default="0 3 * * *", help="cron schedule, UTC (default: daily at 03:00)")
    parser.add_argument("--name", default="simpo-retrain-served", help="deployment name")
    parser.add_argument("--config", type=Path, help="YAML file with flow parameters")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one parameter by dotted path (repeatable)",
    )


def main(args: argparse.Namespace) -> int:
    import os

    from flows.params import check_sources, load_params
    from simpo_core.errors import ConfigError

    if not os.environ.get("PREFECT_API_URL"):
        # An ephemeral API has no scheduler: served cron runs would never start.
        raise ConfigError(
            "simpo serve needs a Prefect server to schedule runs: run `prefect server start --host 127.0.0.1` "
            "and `export PREFECT_API_URL=http://127.0.0.1:4200/api`"
        )
    from flows.retrain import simpo_retrain

    params = load_params(args.config, args.overrides)
    check_sources(params)
    # Blocks until interrupted; runs appear in the Prefect UI under this deployment.
    simpo_retrain.serve(name=args.name, cron=args.cron, parameters={"params": params.model_dump(mode="json")})
    return 0
