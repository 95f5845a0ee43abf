"""`simpo evaluate`: held-out preference metrics for a model, against its starting model.

    simpo evaluate --model DIR --data heldout.parquet --base tiny --out report/ --json

With `--base` both models are evaluated on the same pairs and the summary holds the
`heldout` block with `base`, `trained`, `delta` and `judge`. Without it the model is
evaluated alone: `trained` holds its block, and `base`, `delta` and `judge` are null.
"""

import argparse
import logging
import sys
from pathlib import Path

from flows.commands._common import add_json_flag, emit_summary

HELP = "evaluate a model on held-out preference pairs (optionally against its starting model)"
logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="trained model: folder, hub id or 'tiny'")
    parser.add_argument("--data", required=True, help="held-out pairs: JSON/JSONL/Parquet/CSV file, folder or hub id")
    parser.add_argument(
        "--base",
        default=None,
        help="starting model to compare against (same tokenizer); defaults to the one recorded in a folder "
        "trained by simpo, else --model is evaluated alone",
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="write evaluation.json, evaluation.md and PNG plots here"
    )
    parser.add_argument(
        "--judge",
        choices=("synthetic", "reward-model", "none"),
        default="synthetic",
        help="who scores generated answers, trained vs base (default synthetic)",
    )
    parser.add_argument(
        "--reward-model", default=None, help="local sequence-classification model folder for --judge reward-model"
    )
    parser.add_argument("--beta", type=float, default=2.0, help="SimPO β used in training (default 2.0)")
    parser.add_argument("--gamma", type=float, default=1.0, help="SimPO γ used in training (default 1.0)")
    parser.add_argument("--max-length", type=int, default=512, help="prompt + response tokens kept (default 512)")
    parser.add_argument("--max-prompt-length", type=int, default=256, help="prompt tokens kept (default 256)")
    parser.add_argument("--batch-size", type=int, default=8, help="pairs per forward pass (default 8)")
    parser.add_argument(
        "--generation-samples", type=int, default=16, help="prompts answered for the generation check (0 skips it)"
    )
    parser.add_argument(
        "--max-new-tokens", type=int, default=48, help="bound on generated tokens per answer (default 48)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the prompt sample, sampling and bootstrap")
    add_json_flag(parser)


def main(args: argparse.Namespace) -> int:
    from simpo_core.errors import ConfigError

    if args.judge == "reward-model" and not args.reward_model:
        raise ConfigError(
            "--judge reward-model needs --reward-model PATH (a local sequence-classification model folder)"
        )
    pairs = _load_pairs(args.data)
    settings = {
        "beta": args.beta,
        "gamma": args.gamma,
        "max_length": args.max_length,
        "max_prompt_length": args.max_prompt_length,
        "batch_size": args.batch_size,
        "generation_samples": args.generation_samples,
        "max_new_tokens": args.max_new_tokens,
        "seed": args.seed,
    }
    if args.base is None:
        from simpo_core.models import read_base_model

        args.base = read_base_model(args.model)  # a folder trained here names its starting model
        if args.base is not None:
            logger.info("comparing with the starting model recorded in %s: %s", args.model, args.base)
    if args.base is None:
        summary, markdown = _evaluate_alone(args, pairs, settings)
    else:
        summary, markdown = _evaluate_against_base(args, pairs, settings)
    print(markdown, file=sys.stderr)
    summary.update(model=args.model, base_model=args.base, data=args.data)
    if args.json:
        emit_summary(summary, True)
    return 0


def _load_pairs(source: str):
    """The loadable rows of `source` (prompt, chosen, rejected); unreadable records are reported."""
    from simpo_core.data.loading import load_preferences
    from simpo_core.errors import DataError

    loaded = load_preferences(source)
    frame = loaded.rows
    bad = frame["load_reasons"].map(len) > 0
    if bad.any():
        logger.warning(
            "left out %d of %d records of %s that are not preference pairs (run `simpo validate` for details)",
            int(bad.sum()),
            len(frame),
            source,
        )
    frame = frame.loc[~bad, ["prompt", "chosen", "rejected"]]
    if frame.empty:
        raise DataError(f"{source} holds no usable preference pair; check it with `simpo validate {source}`")
    logger.info("evaluating on %d pairs from %s", len(frame), source)
    return frame


def _evaluate_against_base(args: argparse.Namespace, pairs, settings: dict) -> tuple[dict, str]:
    from simpo_core.eval.heldout import evaluate_heldout
    from simpo_core.models import load_model_and_tokenizer

    trained, tokenizer = load_model_and_tokenizer(args.model)
    base, base_tokenizer = load_model_and_tokenizer(args.base)
    _check_same_tokenizer(tokenizer, base_tokenizer, args)
    result = evaluate_heldout(
        base,
        trained,
        tokenizer,
        pairs,
        judge=args.judge,
        reward_model_path=args.reward_model,
        out_dir=args.out,
        **settings,
    )
    return result.summary(), result.markdown


def _evaluate_alone(args: argparse.Namespace, pairs, settings: dict) -> tuple[dict, str]:
    from simpo_core.eval.heldout import evaluate_model
    from simpo_core.eval.report import render_model_markdown, write_model_report
    from simpo_core.models import load_model_and_tokenizer

    logger.info("no --base given: evaluating %s alone (pass --base SRC to compare with the starting model)", args.model)
    model, tokenizer = load_model_and_tokenizer(args.model)
    block = evaluate_model(model, tokenizer, pairs, **settings)
    markdown = render_model_markdown(block)
    heldout = {
        "pairs": block["pairs"],
        "pairs_sha256": block["pairs_sha256"],
        "beta": args.beta,
        "gamma": args.gamma,
        "base": None,
        "trained": block,
        "delta": None,
        "judge": None,
    }
    paths = write_model_report(heldout, markdown, args.out) if args.out else {}
    return {"heldout": heldout, "report_paths": {kind: str(path) for kind, path in paths.items()}}, markdown


def _check_same_tokenizer(tokenizer, base_tokenizer, args: argparse.Namespace) -> None:
    from simpo_core.errors import ConfigError

    if len(tokenizer) != len(base_tokenizer) or tokenizer.chat_template != base_tokenizer.chat_template:
        raise ConfigError(
            f"--model {args.model} and --base {args.base} use different tokenizers or chat templates; "
            "held-out log-probs are only comparable under one tokenizer: pass the model training started from"
        )
