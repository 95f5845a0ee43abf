"""`simpo validate`: schema-check preference data and quarantine bad rows with reasons."""

import argparse
import logging
from pathlib import Path

from flows.commands._common import add_json_flag, add_settings_arguments, emit_summary, settings_from_args
from flows.commands._failure import record_failure, step

HELP = "validate preference data; write DIR/valid.parquet and DIR/quarantine.jsonl"
SOURCE_HELP = "file, folder, hub id name[:config][@split], or synthetic[:n=N,bias=X,seed=S]"
logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from simpo_core.data.settings import ValidateSettings

    parser.add_argument("source", help=SOURCE_HELP)
    parser.add_argument("--out", type=Path, default=Path("validated"), help="output folder (default ./validated)")
    add_settings_arguments(parser, ValidateSettings)
    parser.add_argument("--tokenizer", default=None, help="tokenizer for the token limits ('tiny', folder or hub id)")
    add_json_flag(parser)


def main(args: argparse.Namespace) -> int:
    from simpo_core.data.settings import ValidateSettings
    from simpo_core.data.validation_stream import validate_source
    from simpo_core.errors import DataError

    settings = settings_from_args(ValidateSettings, args)
    with step("validate-preferences"):
        try:  # streamed chunk by chunk: memory stays bounded however many rows the source has
            result = validate_source(args.source, args.out, settings, tokenizer=limit_tokenizer(args, settings))
        except DataError as error:
            if hasattr(error, "summary"):  # the counts of a source over the invalid-fraction limit
                record_failure(error, **error.summary)  # in the --json failure summary, as on success
                if not args.json:
                    emit_summary(error.summary, False)
            raise
    logger.info("checked %d records from %s (%s layout)", result.summary["total"], result.source, result.format)
    emit_summary(result.report(), args.json)
    return 0


def limit_tokenizer(args: argparse.Namespace, settings) -> object | None:
    """The tokenizer that counts tokens for the limits: --tokenizer, or 'tiny' when limits are set without one."""
    if args.tokenizer is None and (settings.max_prompt_tokens or settings.max_response_tokens):
        args.tokenizer = "tiny"
        logger.info("token limits given without --tokenizer: counting with 'tiny'")
    if args.tokenizer is None:
        return None
    from simpo_core.models import load_tokenizer

    return load_tokenizer(args.tokenizer)
