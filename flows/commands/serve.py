"""`simpo serve`: run the retraining flow on a cron schedule from this process."""

import argparse
from pathlib import Path

from flows.commands._common import add_set_flag

HELP = "serve scheduled retraining from this process (flow.serve with a cron; no work pool needed)"
COLLISION_STRATEGIES = ("CANCEL_NEW", "ENQUEUE")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cron", default="0 3 * * *", help="cron schedule, UTC (default: daily at 03:00)")
    parser.add_argument("--name", default="simpo-retrain-served", help="deployment name")
    parser.add_argument(
        "--concurrency-limit",
        type=int,
        default=1,
        help="most runs of this deployment at once (default 1: a retrain never overlaps the next)",
    )
    parser.add_argument(
        "--collision-strategy",
        choices=COLLISION_STRATEGIES,
        default="CANCEL_NEW",
        help="a run due while the limit is reached: CANCEL_NEW (default: skip it, the next scheduled run "
        "reads newer data anyway) or ENQUEUE (wait for a free slot)",
    )
    parser.add_argument("--config", type=Path, help="YAML file with flow parameters")
    add_set_flag(parser)


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
    if args.concurrency_limit < 1:
        raise ConfigError(f"--concurrency-limit must be at least 1, got {args.concurrency_limit}")
    from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy

    from flows.retrain import simpo_retrain

    params = load_params(args.config, args.overrides)
    check_sources(params)
    # The deployment's limit is kept by the server: a run due while one is active is cancelled
    # (or queued), so a slow night cannot pile runs up (deployments/README.md).
    limit = ConcurrencyLimitConfig(
        limit=args.concurrency_limit, collision_strategy=ConcurrencyLimitStrategy(args.collision_strategy)
    )
    # Blocks until interrupted; runs appear in the Prefect UI under this deployment.
    simpo_retrain.serve(
        name=args.name, cron=args.cron, global_limit=limit, parameters={"params": params.model_dump(mode="json")}
    )
    return 0
