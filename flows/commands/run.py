"""`simpo run`: the whole retraining flow `simpo-retrain`."""

import argparse
import logging
import sys

from flows.commands._common import add_flow_arguments, add_json_flag, emit_summary, flow_overrides
from flows.commands._failure import step

HELP = "run the whole retraining flow (load, validate, audit, split, train, evaluate, register, promote)"
logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_flow_arguments(
        parser,
        "YAML file with flow parameters (groups data, model, train, audit, eval, registry)",
        "train.max_steps=50",
    )
    add_json_flag(parser)


def main(args: argparse.Namespace) -> int:
    from flows.params import check_sources, load_params

    with step("parameters"):
        params = load_params(args.config, flow_overrides(args))
    with step("check-sources"):
        check_sources(params)
    logger.info("starting simpo-retrain: data=%s model=%s", params.data.source, params.model.source)
    from flows.commands._flow_run import run_flow
    from flows.retrain import simpo_retrain

    summary = run_flow(simpo_retrain, params)  # a failure re-raises, with the failed step for --json
    print(describe_run(summary), file=sys.stderr)
    if args.json:
        emit_summary(summary, True)
    return 0


def describe_run(summary: dict) -> str:
    """A short human report of a finished run (the full summary is `--json`)."""
    validation, audit = summary["validation"], summary["audit"]
    lines = [
        "",
        f"data      {validation['valid']} valid of {validation['total']} ({validation['quarantined']} quarantined: "
        f"{validation['quarantine_path']})",
        f"audit     length-only accuracy {audit['length_only_accuracy']:.3f}, {audit['bias_direction']} "
        f"(flagged: {audit['flagged']}, policy {audit['policy']}, removed {audit['removed']})",
    ]
    if summary["skipped"]:
        lines.append(f"skipped   {summary['skip_reason']}")
    else:
        lines += _training_lines(summary)
        verdict = "PROMOTED to champion" if summary["promoted"] else "not promoted"
        lines.append(
            f"registry  {summary['registered_model_name']} v{summary['model_version']} {verdict}: "
            f"{summary['promotion_reason']}"
        )
    lines.append(f"tracking  MLflow run {summary['mlflow_run_id']}, Prefect flow run {summary['flow_run_id']}")
    return "\n".join(lines)


def _training_lines(summary: dict) -> list[str]:
    heldout = summary["heldout"]
    how = "reused" if summary["reused_training"] else "trained"
    if summary["resumed_from_step"] is not None:
        how += f" (resumed from step {summary['resumed_from_step']})"
    lines = [
        f"{how:<9} {summary['train_steps']} steps -> {summary['model_dir']}",
        f"held-out  {heldout['pairs']} pairs        base     trained",
    ]
    base = heldout["base"] or {}  # None when the evaluation skipped the starting model
    keys = ("reward_accuracy", "length_controlled_accuracy", "reward_margin", "length_reward_correlation")
    for key in (*keys, "greedy_repetition_rate"):
        lines.append(f"  {key:<28} {_number(base.get(key)):>8} {_number(heldout['trained'].get(key)):>10}")
    judge = heldout.get("judge") or {}  # what the answers say, not only how they rank
    lines.append(
        f"  {'judge_mean_score':<28} {_number(judge.get('mean_score_base')):>8} "
        f"{_number(judge.get('mean_score_trained')):>10}"
    )
    return lines


def _number(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"
