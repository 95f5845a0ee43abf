"""`simpo audit`: validate, then measure chosen/rejected length balance (and rebalance if asked)."""

import argparse
import logging
from pathlib import Path

from flows.commands._common import add_json_flag, add_settings_arguments, emit_summary, settings_from_args
from flows.commands.validate import SOURCE_HELP

HELP = "audit chosen/rejected length balance with a model's tokenizer"
logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from simpo_core.audit.settings import AuditSettings
    from simpo_core.data.settings import ValidateSettings

    parser.add_argument("source", help=SOURCE_HELP)
    parser.add_argument("--tokenizer", default="tiny", help="tokenizer source (default 'tiny')")
    parser.add_argument("--trust-remote-code", action="store_true", help="run code shipped with the tokenizer")
    parser.add_argument("--out", type=Path, default=Path("audit"), help="output folder (default ./audit)")
    add_settings_arguments(parser, AuditSettings)
    add_settings_arguments(parser, ValidateSettings, ["format", "max_invalid_fraction"])
    add_json_flag(parser)


def main(args: argparse.Namespace) -> int:
    from simpo_core.audit.balance import audit
    from simpo_core.audit.settings import AuditSettings
    from simpo_core.data.settings import ValidateSettings
    from simpo_core.data.validation_stream import validate_source
    from simpo_core.models import load_tokenizer

    tokenizer = load_tokenizer(args.tokenizer, args.trust_remote_code)
    validation = validate_source(
        args.source, args.out, settings_from_args(ValidateSettings, args, ["format", "max_invalid_fraction"])
    )
    result = audit(validation, tokenizer, settings_from_args(AuditSettings, args), args.out)
    summary = {key: value for key, value in result.report.items() if key != "buckets"}
    summary.update(
        {
            "paths": {kind: str(path) for kind, path in result.paths.items()},
            "valid_path": str(validation.valid_path),
            "quarantine_path": str(validation.quarantine_path),
            "validation": {k: validation.summary[k] for k in ("total", "valid", "quarantined", "reasons")},
        }
    )
    emit_summary(summary, args.json)
    return 0
