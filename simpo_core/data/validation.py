"""Validate loaded preference rows: keep the good ones, quarantine the rest with reasons.

No row is lost silently: every loaded row ends in `valid.parquet` or in `quarantine.jsonl`
(original record, source file and row, reason codes and what to fix), and always
`total == valid + quarantined`. Reasons come from loading (`invalid_json`, `missing_field`,
...), from the pandera schema (`simpo_core.data.validation_schema`) and from optional token limits.
"""

import json
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from pathlib import Path
from typing import Any

import pandas as pd

from simpo_core.data.frames import canonical_frame
from simpo_core.data.loading import LoadResult
from simpo_core.data.settings import ValidateSettings
from simpo_core.data.tokens import count_prompt_tokens, count_tokens
from simpo_core.data.validation_schema import REASON_HELP, collect_schema_reasons, invalid_unicode_fields
from simpo_core.errors import ConfigError, DataError

logger = logging.getLogger(__name__)

VALID_FILE = "valid.parquet"
QUARANTINE_FILE = "quarantine.jsonl"
TOP_REASONS = 5
# Load reasons of rows that do not fit the layout they were read in (not bad data as such).
LAYOUT_REASONS = ("missing_field", "unknown_layout")

RowReasons = dict[int, list[tuple[str, str]]]  # row position -> [(code, detail)]
# Called with the schema-checked rows and the reasons so far; may add reasons in place.
SchemaHook = Callable[[pd.DataFrame, RowReasons], None]


@dataclass
class ValidationResult:
    """Valid canonical rows plus the summary (`total`, `valid`, `quarantined`, `reasons`,
    `quarantine_path`, `valid_path`) and what was read (`source`, its layout `format`,
    `mixed` when rows came in several, with `formats` the rows read in each, and its
    `fingerprint`). `valid` is None when validation streamed
    (`simpo_core.data.validation_stream.validate_source`): read `valid_path` instead."""

    valid: pd.DataFrame | None
    summary: dict[str, Any]
    valid_path: Path
    quarantine_path: Path
    source: str = ""
    format: str = ""
    fingerprint: str = ""
    formats: dict[str, int] = dataclass_field(default_factory=dict)

    def report(self) -> dict[str, Any]:
        """The JSON summary of the validation step: the counts plus the source it read
        (`formats`, rows per layout, only when known)."""
        report = {**self.summary, "source": self.source, "format": self.format, "fingerprint": self.fingerprint}
        if self.formats:
            report["formats"] = dict(self.formats)
        return report


def validate_preferences(
    loaded: LoadResult,
    out_dir: Path,
    settings: ValidateSettings | None = None,
    *,
    tokenizer: Any = None,
) -> ValidationResult:
    """Check every loaded row in memory, write `valid.parquet` and `quarantine.jsonl` under `out_dir`.

    The pipeline validates with `validate_source`, which streams; this in-memory path is
    for rows already loaded (and it is the reference the streamed path is tested against).

    Args:
        loaded: the output of `simpo_core.data.loading.load_preferences`.
        out_dir: folder for the two files (created).
        settings: the invalid-fraction limit and the optional token limits (`ValidateSettings`).
        tokenizer: needed only for the token limits.

    Returns:
        A `ValidationResult`; `valid` holds `prompt`, `chosen`, `rejected`, `source_row`,
        `source_file` with a fresh 0..n-1 index.

    Raises:
        ConfigError: a token limit without a tokenizer.
        DataError: the invalid fraction is over `max_invalid_fraction` (after both files
            are written, so the quarantine can be inspected).
    """
    settings = settings or ValidateSettings()
    check_arguments(settings, tokenizer)
    rows = loaded.rows.reset_index(drop=True)
    reasons = collect_reasons(rows, tokenizer, settings.max_prompt_tokens, settings.max_response_tokens)
    bad = pd.Series(False, index=rows.index)
    bad.iloc[list(reasons)] = True
    valid = canonical_frame(rows[~bad.to_numpy()])
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    valid_path = write_valid(valid, out_dir / VALID_FILE)
    quarantine_path = write_quarantine(rows, reasons, out_dir / QUARANTINE_FILE)
    summary = summarise(len(rows), len(valid), reason_counts(reasons), quarantine_path, valid_path)
    logger.info("validated %s: %d valid, %d quarantined", loaded.source, summary["valid"], summary["quarantined"])
    result = ValidationResult(
        valid, summary, valid_path, quarantine_path, loaded.source, loaded.format, loaded.fingerprint, loaded.formats
    )
    enforce_fraction(result.report(), settings.max_invalid_fraction)
    return result


def collect_reasons(
    rows: pd.DataFrame,
    tokenizer: Any = None,
    max_prompt_tokens: int | None = None,
    max_response_tokens: int | None = None,
    after_schema: SchemaHook | None = None,
) -> RowReasons:
    """Every failing row position (of a 0..n-1 indexed frame) with its reasons.

    `after_schema` sees the schema-checked rows and the reasons found so far before the
    token limits run (streaming validation adds duplicates of earlier chunks there)."""
    reasons: RowReasons = {}
    loaded_ok = rows["load_reasons"].map(len).to_numpy() == 0
    for position in (~loaded_ok).nonzero()[0]:
        row = rows.iloc[position]
        reasons[int(position)] = list(zip(row["load_reasons"], row["load_details"]))
    for label, field in invalid_unicode_fields(rows[loaded_ok]).items():
        reasons[int(label)] = [("invalid_unicode", REASON_HELP["invalid_unicode"].format(field=field))]
        loaded_ok[label] = False
    candidates = rows.loc[loaded_ok, ["prompt", "chosen", "rejected"]]
    for label, found in collect_schema_reasons(candidates).items():
        reasons[int(label)] = found
    if after_schema is not None:
        after_schema(candidates, reasons)
    clean = candidates.drop(index=[p for p in reasons if p in candidates.index])
    if tokenizer is not None and (max_prompt_tokens or max_response_tokens) and not clean.empty:
        for position, found in _token_limit_reasons(clean, tokenizer, max_prompt_tokens, max_response_tokens).items():
            reasons[position] = found
    return reasons


def _token_limit_reasons(
    frame: pd.DataFrame, tokenizer: Any, max_prompt: int | None, max_response: int | None
) -> RowReasons:
    reasons: RowReasons = {}
    checks = []
    if max_prompt:
        checks.append(("prompt", "prompt_too_long", max_prompt, count_prompt_tokens(frame["prompt"], tokenizer)))
    if max_response:
        for field in ("chosen", "rejected"):
            checks.append((field, "response_too_long", max_response, count_tokens(frame[field], tokenizer)))
    for field, code, limit, lengths in checks:
        for label, length in zip(frame.index[lengths > limit], lengths[lengths > limit]):
            detail = f"{field} has {int(length)} tokens, over the limit {limit}; shorten it or raise the limit"
            reasons.setdefault(int(label), []).append((code, detail))
    return reasons


def write_valid(valid: pd.DataFrame, path: Path) -> Path:
    """Write the valid canonical rows as Parquet (prompt as a list of role/content structs)."""
    valid.to_parquet(path, index=False)
    return path


def write_quarantine(rows: pd.DataFrame, reasons: RowReasons, path: Path) -> Path:
    """Write one JSON line per quarantined row: record, source_file, source_row, reasons, details."""
    with path.open("w", encoding="utf-8") as handle:
        write_quarantine_lines(handle, rows, reasons)
    return path


def write_quarantine_lines(handle: Any, rows: pd.DataFrame, reasons: RowReasons) -> None:
    """Write the quarantine lines of `rows` (0..n-1 indexed) to an open text file, in row order."""
    positions = sorted(reasons)
    picked = rows.iloc[positions][["record", "source_file", "source_row"]]
    for position, (record, source_file, source_row) in zip(positions, picked.itertuples(index=False)):
        found = reasons[position]
        _write_line(handle, record, source_file, source_row, [c for c, _ in found], [d for _, d in found])


def append_quarantine(path: Path, removed: pd.DataFrame, reason: str, detail: str | None = None) -> int:
    """Append rows dropped after validation (e.g. by the length audit) to `quarantine.jsonl`.

    The record is the row's `record` column when present, else its canonical JSON.

    Returns:
        The number of lines appended.
    """
    detail = detail or REASON_HELP.get(reason, reason)
    with Path(path).open("a", encoding="utf-8") as handle:
        for row in removed.to_dict("records"):
            record = row.get("record") or json.dumps(
                {k: _plain(row[k]) for k in ("prompt", "chosen", "rejected")}, ensure_ascii=False
            )
            _write_line(handle, record, row.get("source_file"), row.get("source_row"), [reason], [detail])
    return len(removed)


def _write_line(
    handle: Any, record: Any, source_file: Any, source_row: Any, codes: list[str], details: list[str]
) -> None:
    entry = {
        "source_file": None if pd.isna(source_file) else str(source_file),
        "source_row": None if source_row is None else int(source_row),
        "reasons": codes,
        "details": details,
        "record": record if isinstance(record, str) else json.dumps(_plain(record), default=str),
    }
    try:
        line = json.dumps(entry, ensure_ascii=False)
        line.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates from invalid input: keep them, escaped
        line = json.dumps(entry, ensure_ascii=True)
    handle.write(line + "\n")


def _plain(value: Any) -> Any:
    return value.tolist() if hasattr(value, "tolist") else value


def reason_counts(reasons: RowReasons) -> Counter:
    """Quarantined rows per reason code (a row counts once per code)."""
    return Counter(code for found in reasons.values() for code in dict.fromkeys(c for c, _ in found))


def summarise(total: int, valid: int, counts: Counter, quarantine_path: Path, valid_path: Path) -> dict[str, Any]:
    """The validation summary; reasons from most to least common."""
    return {
        "total": total,
        "valid": valid,
        "quarantined": total - valid,
        "reasons": dict(counts.most_common()),
        "quarantine_path": str(quarantine_path),
        "valid_path": str(valid_path),
    }


def enforce_fraction(summary: dict[str, Any], max_invalid_fraction: float) -> None:
    """Raise `DataError` when quarantined / total is over the limit; the error carries
    `summary` (the step's report) so that the CLI still prints the counts."""
    total, quarantined = summary["total"], summary["quarantined"]
    if total and quarantined / total > max_invalid_fraction:
        top = ", ".join(f"{code} ({count})" for code, count in list(summary["reasons"].items())[:TOP_REASONS])
        error = DataError(
            f"{quarantined} of {total} rows ({quarantined / total:.1%}) failed validation, above "
            f"max_invalid_fraction={max_invalid_fraction:g}. Top reasons: {top}. See {summary['quarantine_path']} "
            f"for each row and what to fix{_fraction_advice(summary)}"
        )
        error.summary = summary
        raise error


def _fraction_advice(summary: dict[str, Any]) -> str:
    # Rows in a layout other than the one read are not bad data: accepting more losses would
    # throw them away, so the advice is then to read them in their layout.
    layout_rows = sum(summary["reasons"].get(code, 0) for code in LAYOUT_REASONS)
    if layout_rows:
        return (
            f"; {layout_rows} rows do not fit the layout they were read in ({', '.join(LAYOUT_REASONS)}): "
            "leave --format unset so each row's layout is detected, or convert those rows (see docs/data.md)."
        )
    return ", or raise data.max_invalid_fraction (--max-invalid-fraction) to accept them."


def check_arguments(settings: ValidateSettings, tokenizer: Any) -> None:
    """Raise `ConfigError` for token limits without a tokenizer (the settings check the rest)."""
    if (settings.max_prompt_tokens or settings.max_response_tokens) and tokenizer is None:
        raise ConfigError("max_prompt_tokens/max_response_tokens need a tokenizer; pass one or drop the limits")
