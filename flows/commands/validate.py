"""`simpo validate`: schema-check preference data and quarantine bad rows with reasons."""

import argparse
import logging
from pathlib import Path

from flows.commands._common import add_json_flag, emit_summary

HELP = "validate preference data; write DIR/valid.parquet and DIR/quarantine.jsonl"
FORMATS = ("flat", "conversational", "sharegpt", "hh-rlhf")
logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", help="file, folder, hub id name[:config][@split], or synthetic[:n=N,bias=X,seed=S]")
    parser.add_argument("--out", type=Path, default=Path("validated"), help="output folder (default ./validated)")
    parser.add_argument("--format", choices=FORMATS, default=None, help="force a layout instead of detecting it")
    parser.add_argument(
        "--max-invalid-fraction",
        type=float,
        default=0.05,
        help="fail when more than this share of rows is quarantined (default 0.05)",
    )
    parser.add_argument("--tokenizer", default=None, help="tokenizer for the token limits ('tiny', folder or hub id)")
    parser.add_argument("--max-prompt-tokens", type=int, default=None, help="quarantine longer prompts")
    parser.add_argument("--max-response-tokens", type=int, default=None, help="quarantine longer responses")
    add_json_flag(parser)


def main(args: argparse.Namespace) -> int:
    from simpo_core.data.validation_stream import validate_source
    from simpo_core.errors import DataError

    tokenizer = _tokenizer(args)
    try:  # streamed chunk by chunk: memory stays bounded however many rows the source has
        result, loaded = validate_source(
            args.source,
            args.out,
            format=args.format,
            max_invalid_fraction=args.max_invalid_fraction,
            tokenizer=tokenizer,
            max_prompt_tokens=args.max_prompt_tokens,
            max_response_tokens=args.max_response_tokens,
        )
    except DataError as error:
        if hasattr(error, "summary") and hasattr(error, "loaded"):
            emit_summary(_with_source(error.summary, error.loaded), args.json)
        raise
    logger.info("checked %d records from %s (%s layout)", loaded.total, loaded.source, loaded.format)
    emit_summary(_with_source(result.summary, loaded), args.json)
    return 0


def _tokenizer(args: argparse.Namespace):
    if args.tokenizer is None and (args.max_prompt_tokens or args.max_response_tokens):
        args.tokenizer = "tiny"
        logger.info("token limits given without --tokenizer: counting with 'tiny'")
    if args.tokenizer is None:
        return None
    from simpo_core.models import load_tokenizer

    return load_tokenizer(args.tokenizer)


def _with_source(summary: dict, loaded) -> dict:
    return {**summary, "source": loaded.source, "format": loaded.format, "fingerprint": loaded.fingerprint}
