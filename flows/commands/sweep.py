"""`simpo sweep`: the hyper-parameter sweep flow `simpo-sweep`."""

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from flows.commands._common import FLAG_TO_PARAM, add_flow_arguments, add_json_flag, emit_summary, flow_overrides
from flows.commands._failure import step

HELP = "train trials of β, γ/β and lr on the same data; register the best as the challenger (the gate decides)"
logger = logging.getLogger(__name__)

SWEEP_FLAGS = {
    "runner": "sweep.runner",
    "max_concurrency": "sweep.max_concurrency",
    "dask_address": "sweep.dask_address",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_flow_arguments(
        parser,
        "YAML file: the flow's groups (data, model, train, ...) and a `sweep` group",
        "train.max_steps=50 or 'sweep.grid={lr: [1e-3, 3e-4]}'",
    )
    parser.add_argument("--runner", choices=["local", "dask"], help="where trials run (default local)")
    parser.add_argument("--max-concurrency", type=int, help="trials at the same time (default: one per GPU, 1 without)")
    parser.add_argument("--dask-address", help="Dask scheduler address for --runner dask (default: a local cluster)")
    add_json_flag(parser)


def main(args: argparse.Namespace) -> int:
    from flows.model_steps import training_config
    from flows.params import check_sources
    from simpo_core.sweep.plan import planned_stages

    with step("parameters"):
        params, sweep = load_sweep_params(args.config, flow_overrides(args, {**FLAG_TO_PARAM, **SWEEP_FLAGS}))
        stages = planned_stages(sweep, training_config(params))  # every trial's config, before any work
    with step("check-sources"):
        check_sources(params)
    logger.info(
        "starting simpo-sweep: %s on %s, runner %s x%s",
        ", ".join(f"{stage.name} ({len(stage.combos)})" for stage in stages),
        params.model.source,
        sweep.runner,
        sweep.max_concurrency or "one per GPU (1 without)",
    )
    from flows.commands._flow_run import run_flow
    from flows.sweep import simpo_sweep

    summary = run_flow(simpo_sweep, params, sweep=sweep)  # a failure re-raises, with the failed step for --json
    print(describe_sweep(summary), file=sys.stderr)
    if args.json:
        emit_summary(summary, True)
    return 0


def load_sweep_params(config_file: Path | None, overrides: list[str]) -> tuple[Any, Any]:
    """The flow's parameters and the `sweep` group, from a YAML file and `key=value` overrides.

    Raises:
        ConfigError: unreadable file, unknown key or invalid value (names the dotted path).
    """
    from flows.params import raw_params, validate_params
    from simpo_core.errors import ConfigError
    from simpo_core.sweep.settings import SweepSettings

    raw = raw_params(config_file, overrides)
    sweep = raw.pop("sweep", None) or {}
    if not isinstance(sweep, dict):
        raise ConfigError(f"sweep must be a mapping of sweep settings (grid, runner, ...); got {sweep!r:.60}")
    return validate_params(raw), SweepSettings.from_values(sweep, source="sweep settings")


def describe_sweep(summary: dict[str, Any]) -> str:
    """A short human report: one line per trial, the winner and the gate's decision."""
    metric = summary["metric"]
    lines = ["", f"{'trial':<44} {'LC acc':>7} {'acc':>7}  verdict"]
    for trial in summary["trials"]:
        metrics = trial["metrics"] or {}
        verdict = "WINNER" if summary["winner"] and trial["name"] == summary["winner"]["name"] else ""
        lines.append(
            f"{trial['name']:<44} {_number(metrics.get('length_controlled_accuracy')):>7} "
            f"{_number(metrics.get('reward_accuracy')):>7}  {verdict or trial['disqualified'] or 'eligible'}"
        )
    registry = summary["registry"]
    lines.append(f"winner    {summary['winner_reason']} (by {metric})")
    version = registry["model_version"]
    if version is None:
        lines.append(f"registry  {registry['promotion_reason']}")
    else:
        verdict = "PROMOTED to champion" if registry["promoted"] else "not promoted"
        lines.append(
            f"registry  {registry['registered_model_name']} v{version} {verdict}: {registry['promotion_reason']}"
        )
    lines.append(f"results   {summary['results_table']}  plot {summary['plot']}")
    lines.append(f"tracking  MLflow run {summary['mlflow_run_id']}, Prefect flow run {summary['flow_run_id']}")
    return "\n".join(lines)


def _number(value: Any) -> str:
    return "n/a" if value is None else f"{value:.3f}"
