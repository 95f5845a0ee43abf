"""Validate a preference source chunk by chunk, in memory bounded by the chunk size.

`validate_source` reads the source in chunks of `chunk_rows` rows (JSONL, Parquet, CSV and
hub datasets stream; a plain `.json` file is read whole), checks each chunk with the same
reasons as `simpo_core.data.validation.validate_preferences`, appends its valid rows to
`valid.parquet` and its quarantined rows to `quarantine.jsonl`, and forgets it. The only
state kept per row is a 16-byte BLAKE2b digest of each checked pair, so a duplicate of a
row from an earlier chunk is still quarantined as `duplicate_pair`. The files and the
summary hold the same rows, reasons and counts as the in-memory path; only reasons with
equal counts may be listed in another order when there are several chunks.
"""

import hashlib
import logging
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from simpo_core.data.frame_builder import FRAME_COLUMNS
from simpo_core.data.frames import canonical_frame, concat_chunks, prompt_keys
from simpo_core.data.loading import load_preferences
from simpo_core.data.readers import CHUNK_ROWS
from simpo_core.data.settings import ValidateSettings
from simpo_core.data.validation import (
    QUARANTINE_FILE,
    VALID_FILE,
    RowReasons,
    ValidationResult,
    check_arguments,
    collect_reasons,
    enforce_fraction,
    reason_counts,
    summarise,
    validate_preferences,
    write_quarantine_lines,
    write_valid,
)
from simpo_core.data.validation_schema import REASON_HELP

logger = logging.getLogger(__name__)

DIGEST_BYTES = 16
_DUPLICATE = ("duplicate_pair", REASON_HELP["duplicate_pair"].format(field="chosen and rejected"))


class PairDigests:
    """A set of 16-byte pair digests, held as a few sorted numpy runs (16 bytes per pair).

    Runs of similar size are merged as they are added, so there are O(log n) runs and
    looking up a chunk costs O(chunk · log² n)."""

    def __init__(self) -> None:
        self._runs: list[np.ndarray] = []

    def __len__(self) -> int:
        return sum(len(run) for run in self._runs)

    def contains(self, digests: np.ndarray) -> np.ndarray:
        """Boolean mask, shape (N,): which of `digests` (dtype S16) were added before."""
        found = np.zeros(len(digests), dtype=bool)
        for run in self._runs:
            at = np.minimum(np.searchsorted(run, digests), len(run) - 1)
            found |= run[at] == digests
        return found

    def add(self, digests: np.ndarray) -> None:
        """Remember `digests` (dtype S16)."""
        if len(digests):
            self._runs.append(np.unique(digests))
        while len(self._runs) > 1 and len(self._runs[-2]) <= 2 * len(self._runs[-1]):
            last = self._runs.pop()
            self._runs[-1] = np.union1d(self._runs[-1], last)


def pair_digests(frame: pd.DataFrame) -> np.ndarray:
    """BLAKE2b digest (16 bytes) of each row's (canonical prompt JSON, chosen, rejected), shape (N,)."""
    blake2b = hashlib.blake2b
    triples = zip(prompt_keys(frame["prompt"]), frame["chosen"], frame["rejected"])
    digests = b"".join(
        blake2b(
            f"{len(prompt)}:{prompt}{_text_key(chosen)}{_text_key(rejected)}".encode("utf-8", "surrogatepass"),
            digest_size=DIGEST_BYTES,
        ).digest()
        for prompt, chosen, rejected in triples
    )
    return np.frombuffer(digests, dtype=f"S{DIGEST_BYTES}")


def _text_key(value: Any) -> str:
    # Like the schema's duplicate check: texts compare as they are, nulls equal each other,
    # other junk by its repr. Length-prefixed, so no two triples give the same key.
    if not isinstance(value, str):
        if value is None or value is pd.NA or (isinstance(value, float) and value != value):
            return "-"
        value = repr(value)
    return f"{len(value)}:{value}"


class _SchemaDrift(Exception):
    """A later chunk's valid rows do not fit the Parquet schema of the first ones."""


class _ChunkValidator:
    """Checks each loaded chunk and appends it to the two output files."""

    def __init__(self, out_dir: Path, tokenizer: Any, max_prompt: int | None, max_response: int | None) -> None:
        self.valid_path, self.quarantine_path = out_dir / VALID_FILE, out_dir / QUARANTINE_FILE
        self.limits = (tokenizer, max_prompt, max_response)
        self.seen = PairDigests()
        self.counts: Counter = Counter()
        self.total = self.valid = 0
        self._quarantine = self.quarantine_path.open("w", encoding="utf-8")
        self._writer: pq.ParquetWriter | None = None
        self._empty_valid: pd.DataFrame | None = None  # written when no row is valid

    def __call__(self, chunk: pd.DataFrame) -> None:
        chunk["source_file"] = chunk["source_file"].astype("category")  # as the loaded frame has it
        reasons = collect_reasons(chunk, *self.limits, after_schema=self._mark_earlier_duplicates)
        bad = np.zeros(len(chunk), dtype=bool)
        bad[list(reasons)] = True
        valid = canonical_frame(chunk[~bad])
        self._append_valid(valid)
        write_quarantine_lines(self._quarantine, chunk, reasons)
        self.counts.update(reason_counts(reasons))
        self.total += len(chunk)
        self.valid += len(valid)
        logger.debug("checked %d rows: %d valid so far", self.total, self.valid)

    def _mark_earlier_duplicates(self, checked: pd.DataFrame, reasons: RowReasons) -> None:
        digests = pair_digests(checked)
        for label in checked.index[self.seen.contains(digests)]:
            found = reasons.setdefault(int(label), [])
            if _DUPLICATE[0] not in (code for code, _ in found):
                # Where the schema puts it: after identical_responses, before column checks.
                found.insert(1 if found and found[0][0] == "identical_responses" else 0, _DUPLICATE)
        self.seen.add(digests)

    def _append_valid(self, valid: pd.DataFrame) -> None:
        if valid.empty:
            if self._empty_valid is None:
                self._empty_valid = valid
            return
        table = pa.Table.from_pandas(valid, preserve_index=False)
        if self._writer is None:
            schema = table.schema
            at = schema.get_field_index("source_file")  # each chunk has its own categories
            schema = schema.set(
                at, pa.field("source_file", pa.dictionary(pa.int32(), schema.field(at).type.value_type))
            )
            self._writer = pq.ParquetWriter(self.valid_path, schema)
        expected = self._writer.schema
        for name, field in zip(expected.names, expected):  # a cast could drop message fields
            if name != "source_file" and table.schema.field(name).type != field.type:
                raise _SchemaDrift(f"{name} is {table.schema.field(name).type} here, {field.type} before")
        self._writer.write_table(table.cast(expected))

    def close(self, finished: bool = True) -> None:
        """Close both files; when `finished`, write a valid file with no rows if none was valid."""
        self._quarantine.close()
        if self._writer is not None:
            self._writer.close()
        elif finished:
            empty = self._empty_valid
            write_valid(
                empty if empty is not None else canonical_frame(concat_chunks([], FRAME_COLUMNS)), self.valid_path
            )


def validate_source(
    source: str,
    out_dir: Path,
    settings: ValidateSettings | None = None,
    *,
    tokenizer: Any = None,
    chunk_rows: int = CHUNK_ROWS,
) -> ValidationResult:
    """The validation step: load and check `source` chunk by chunk, writing `valid.parquet`
    and `quarantine.jsonl` under `out_dir`.

    `simpo validate`, `simpo audit` and the flow's `validate-preferences` task all call this.

    Args:
        source: anything `simpo_core.data.loading.load_preferences` accepts.
        out_dir: folder for the two files (created).
        settings: layout, invalid-fraction limit and token limits (`ValidateSettings`).
        tokenizer: needed only for the token limits.
        chunk_rows: rows checked at a time; memory grows with this, not with the source.

    Returns:
        A `ValidationResult` with `valid` None (read `valid_path`) and the source's
        `source`, `format` and `fingerprint`.

    Raises:
        ConfigError: a bad setting, or token limits without a tokenizer.
        DataError: an unreadable source, or the invalid fraction is over `max_invalid_fraction`
            (after both files are written; the error carries the step's report as `summary`).
    """
    settings = settings or ValidateSettings()
    check_arguments(settings, tokenizer)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    checker = _ChunkValidator(out_dir, tokenizer, settings.max_prompt_tokens, settings.max_response_tokens)
    try:
        loaded = load_preferences(source, settings.format, on_chunk=checker, chunk_rows=chunk_rows)
    except _SchemaDrift as drift:
        checker.close(finished=False)
        logger.warning("%s: message fields differ between chunks (%s); validating it in memory instead", source, drift)
        result = validate_preferences(load_preferences(source, settings.format), out_dir, settings, tokenizer=tokenizer)
        result.valid = None  # the same contract as the streamed result
        return result
    except BaseException:
        checker.close(finished=False)
        raise
    checker.close()
    summary = summarise(checker.total, checker.valid, checker.counts, checker.quarantine_path, checker.valid_path)
    logger.info("validated %s: %d valid, %d quarantined", source, summary["valid"], summary["quarantined"])
    result = ValidationResult(
        None,
        summary,
        checker.valid_path,
        checker.quarantine_path,
        loaded.source,
        loaded.format,
        loaded.fingerprint,
        loaded.formats,
    )
    enforce_fraction(result.report(), settings.max_invalid_fraction)
    return result
