"""Read local preference files record by record, streaming where the format allows.

Every reader yields `RawRecord`s: the 1-based line (JSONL) or record/row number, the parsed
value (or `UNPARSED`), the original record as text, and a load reason when it could not be
parsed. Nothing is skipped except blank JSONL lines. Each reader also feeds the bytes it
reads into a hash, the source fingerprint.
"""

import hashlib
import json
import logging
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

from simpo_core.errors import DataError

logger = logging.getLogger(__name__)

SUFFIXES = (".jsonl", ".json", ".parquet", ".csv")
CHUNK_ROWS = 50_000
UNPARSED = object()
# Cells of these columns holding JSON (messages in a CSV) are parsed back into objects.
_STRUCTURED_COLUMNS = ("prompt", "chosen", "rejected", "conversations")


class RawRecord(NamedTuple):
    source_row: int
    value: Any
    text: str
    reason: str | None = None
    detail: str | None = None


def record_text(value: Any) -> str:
    """A record as JSON text; lone surrogates (invalid unicode) are escaped, not lost."""
    try:
        text = json.dumps(value, ensure_ascii=False, default=str)
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return json.dumps(value, ensure_ascii=True, default=str)


def read_file(path: Path, hasher: "hashlib._Hash") -> Iterator[RawRecord]:
    """Yield the records of one local file; the suffix picks the reader."""
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        yield from _read_jsonl(path, hasher)
    elif suffix == ".json":
        yield from _read_json(path, hasher)
    elif suffix == ".csv":
        _hash_file(path, hasher)
        yield from _read_csv(path)
    elif suffix == ".parquet":
        _hash_file(path, hasher)
        yield from _read_parquet(path)
    else:
        raise DataError(f"{path}: unsupported file type {suffix!r}; use one of {', '.join(SUFFIXES)}")


def list_folder(folder: Path) -> list[Path]:
    """The supported files under `folder` (recursively, hidden ones skipped), sorted."""
    files = sorted(
        p
        for p in folder.rglob("*")
        if p.is_file()
        and p.suffix.lower() in SUFFIXES
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )
    if not files:
        raise DataError(f"folder {folder} holds no {', '.join(SUFFIXES)} files; point at a data file or folder")
    return files


def _read_jsonl(path: Path, hasher: "hashlib._Hash") -> Iterator[RawRecord]:
    with path.open("rb") as handle:
        for line_number, raw in enumerate(handle, start=1):
            hasher.update(raw)
            if not raw.strip():
                continue  # a blank line is not a record
            yield _parse_line(raw.rstrip(b"\r\n"), line_number)


def _parse_line(raw: bytes, line_number: int) -> RawRecord:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        text = raw.decode("utf-8", errors="backslashreplace")
        detail = (
            f"line {line_number} is not valid UTF-8 ({error.reason} at byte {error.start}); re-save the file as UTF-8"
        )
        return RawRecord(line_number, UNPARSED, text, "invalid_unicode", detail)
    try:
        return RawRecord(line_number, json.loads(text), text)
    except json.JSONDecodeError as error:
        detail = f"line {line_number} is not valid JSON: {error.msg} at column {error.colno}"
        return RawRecord(line_number, UNPARSED, text, "invalid_json", detail)
    except RecursionError:  # hostile nesting deeper than the parser's stack
        detail = f"line {line_number} nests JSON too deeply to parse; flatten the record"
        return RawRecord(line_number, UNPARSED, text, "invalid_json", detail)


def _read_json(path: Path, hasher: "hashlib._Hash") -> Iterator[RawRecord]:
    data = path.read_bytes()
    hasher.update(data)
    # Undecodable bytes become lone surrogates, which validation reports as invalid_unicode.
    text = data.decode("utf-8", errors="surrogateescape")
    try:
        value = json.loads(text)
    except RecursionError as error:
        raise DataError(f"{path} nests JSON too deeply to parse; flatten the records or save them as .jsonl") from error
    except json.JSONDecodeError as error:
        if error.msg == "Extra data":  # JSON Lines saved with a .json suffix
            for line_number, line in enumerate(text.splitlines(), start=1):
                if line.strip():
                    yield _parse_line(line.encode("utf-8", errors="surrogateescape"), line_number)
            return
        raise DataError(
            f"{path} is not valid JSON ({error.msg} at line {error.lineno}, column {error.colno}); "
            "fix the file, or save one record per line as .jsonl so a bad line is quarantined alone"
        ) from error
    records = _records_of(value, path)
    for index, record in enumerate(records, start=1):
        yield RawRecord(index, record, record_text(record))


def _records_of(value: Any, path: Path) -> list:
    if isinstance(value, list):
        return value
    if isinstance(value, dict):
        lists = [v for v in value.values() if isinstance(v, list)]
        if len(value) == 1 and lists:  # {"train": [...]} or {"data": [...]}
            return lists[0]
        return [value]
    raise DataError(f"{path} holds a JSON {type(value).__name__}; expected a list of records")


def _read_csv(path: Path) -> Iterator[RawRecord]:
    import pandas as pd

    reader = pd.read_csv(
        path,
        dtype=object,
        keep_default_na=False,
        na_values=[""],
        chunksize=CHUNK_ROWS,
        encoding_errors="surrogateescape",
    )
    row_number = 0
    for chunk in reader:
        for record in chunk.to_dict("records"):
            row_number += 1
            original = {k: (None if _is_nan(v) else v) for k, v in record.items()}
            yield RawRecord(row_number, _parse_structured_cells(original), record_text(original))


def _read_parquet(path: Path) -> Iterator[RawRecord]:
    import pyarrow.parquet as pq

    row_number = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=CHUNK_ROWS):
        for record in batch.to_pylist():
            row_number += 1
            yield RawRecord(row_number, record, record_text(record))


def _parse_structured_cells(record: dict) -> dict:
    for key in _STRUCTURED_COLUMNS:
        value = record.get(key)
        if isinstance(value, str) and value.startswith(("[", "{")) and value.rstrip().endswith(("]", "}")):
            try:
                record[key] = json.loads(value)
            except (json.JSONDecodeError, RecursionError):
                pass  # a plain response that happens to start with a bracket
    return record


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def _hash_file(path: Path, hasher: "hashlib._Hash") -> None:
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            hasher.update(block)
