"""`simpo audit`: validate, then measure chosen/rejected length balance (and rebalance if asked)
and count the pairs the training limits would cut (`--max-length`, `--max-prompt-length`;
SimPOConfig's defaults when not given)."""

import argparse
import logging
from pathlib import Path

from flows.commands._common import add_json_flag, add_settings_arguments, emit_summary, settings_from_args
from flows.commands._failure import record_failure, step
from flows.commands.validate import SOURCE_HELP

HELP = "audit chosen/rejected length balance and truncation with a model's tokenizer"
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
    from simpo_core.errors import DataError
    from simpo_core.models import load_tokenizer

    with step("load-tokenizer"):
        tokenizer = load_tokenizer(args.tokenizer, args.trust_remote_code)
    with step("validate-preferences"):
        try:
            validation = validate_source(
                args.source, args.out, settings_from_args(ValidateSettings, args, ["format", "max_invalid_fraction"])
            )
        except DataError as error:
            if hasattr(error, "summary"):  # the counts of a source over the invalid-fraction limit
                record_failure(error, validation=error.summary)
            raise
    counts = {key: validation.summary[key] for key in ("total", "valid", "quarantined", "reasons")}
    with step("audit-length-balance", validation=counts, quarantine_path=str(validation.quarantine_path)):
        refuse_no_pairs(args.source, validation.summary)
        result = audit(validation, tokenizer, settings_from_args(AuditSettings, args), args.out)
    summary = {key: value for key, value in result.report.items() if key != "buckets"}
    summary.update(
        {
            "paths": {kind: str(path) for kind, path in result.paths.items()},
            "valid_path": str(validation.valid_path),
            "quarantine_path": str(validation.quarantine_path),
            "validation": counts,
        }
    )
    emit_summary(summary, args.json)
    return 0


def refuse_no_pairs(source: str, validation: dict) -> None:
    """No valid pair: there is no length balance to measure, and "ok over 0 pairs" would pass it.

    Raises:
        DataError: what was read and where the quarantined rows and their reasons are.
    """
    from simpo_core.errors import DataError

    if validation["valid"]:
        return
    if not validation["total"]:
        raise DataError(f"{source} holds no records: there are no pairs to audit; check the source")
    reasons = ", ".join(f"{code} ({count})" for code, count in list(validation["reasons"].items())[:3])
    raise DataError(
        f"no valid pair to audit: all {validation['total']} records of {source} were quarantined "
        f"(top reasons: {reasons}); see {validation['quarantine_path']} for each row and what to fix"
    )
