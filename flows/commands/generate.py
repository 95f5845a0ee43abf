"""`simpo generate`: on-policy preference pairs from a model's own answers, scored by a judge."""

import argparse
import logging
from pathlib import Path

from flows.commands._common import (
    add_json_flag,
    add_registry_arguments,
    add_settings_arguments,
    emit_summary,
    settings_from_args,
)
from flows.commands._failure import step

# every GenerateSettings field but the remote-code opt-in, which is a plain switch
SETTINGS_FLAGS = [
    "samples",
    "temperature",
    "top_p",
    "max_new_tokens",
    "batch_size",
    "seed",
    "judge",
    "judge_model",
    "min_score_gap",
    "max_prompt_length",
]
HELP = "sample answers to prompts from the champion (or --generator), judge them, write best/worst pairs"
logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from simpo_core.generate.settings import GenerateSettings

    parser.add_argument(
        "--prompts",
        required=True,
        help="prompt file (JSONL/JSON/Parquet/CSV with prompt or messages), a preference file, a dataset id, "
        "or synthetic[:n=N,seed=S]",
    )
    parser.add_argument(
        "--generator",
        help="the model that answers: folder, hub id or 'tiny' (default: the registry's champion, else --model)",
    )
    parser.add_argument("--model", default="tiny", help="the model to use when there is no champion (default tiny)")
    parser.add_argument("--out", type=Path, required=True, help="the pairs file to write (JSONL)")
    add_registry_arguments(parser)
    parser.add_argument("--device", default="auto", help="where the generator and the reward model run")
    add_settings_arguments(parser, GenerateSettings, SETTINGS_FLAGS)
    parser.add_argument(
        "--judge-trust-remote-code", action="store_true", help="run code shipped with the reward model (opt-in)"
    )
    add_json_flag(parser)


def main(args: argparse.Namespace) -> int:
    from flows.params import RegistryLocation
    from simpo_core.generate.settings import GenerateSettings
    from simpo_core.generate.step import generate_step
    from tasks.generation import resolve_generator
    from tasks.helpers.tracking import resolve_tracking_uri

    settings = settings_from_args(GenerateSettings, args, SETTINGS_FLAGS)
    settings.judge_trust_remote_code = args.judge_trust_remote_code
    with step("resolve-generator"):
        if args.generator:
            source, label = args.generator, args.generator
        else:
            client_name = args.name or RegistryLocation().registered_model_name
            source, label = resolve_generator(None, args.model, client_name, resolve_tracking_uri(args.tracking_uri))
    logger.info("sampling %d answers per prompt with %s, judged by %s", settings.samples, label, settings.judge)

    def progress(done: int, total: int) -> None:
        logger.info("answers sampled: round %d of %d", done, total)

    with step("generate-pairs"):
        result = generate_step(
            args.prompts,
            source,
            settings,
            args.out.parent,
            device=args.device,
            generator_label=label,
            progress=progress,
            pairs_name=args.out.name,
        )
    summary = result.summary()
    logger.info("%d pairs from %d prompts written to %s", summary["pairs"], summary["prompts"], result.pairs_path)
    emit_summary(summary, args.json)
    return 0
