"""Read local preference files record by record, streaming where the format allows.

Every reader yields `RawRecord`s: the 1-based line (JSONL) or record/row number, the parsed
value (or `UNPARSED`), the original record as text, and a load reason when it could not be
parsed. Nothing is skipped except blank JSONL lines. Each reader also feeds the bytes it
reads into a hash, the source fingerprint.

Text is UTF-8 with or without a byte-order mark (spreadsheet and Windows tools write one).
`.jsonl.gz`, `.json.gz` and `.csv.gz` are decompressed as they are read; their fingerprint
hashes the decompressed bytes, so it does not change with gzip's header (name, time).
"""

import gzip
import hashlib
import json
import logging
import math
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

from simpo_core.errors import DataError

logger = logging.getLogger(__name__)

SUFFIXES = (".jsonl", ".json", ".parquet", ".csv", ".jsonl.gz", ".json.gz", ".csv.gz")
BOM = b"\xef\xbb\xbf"  # the UTF-8 byte-order mark
CHUNK_ROWS = 50_000
UNPARSED = object()
_LONGEST_FIRST = sorted(SUFFIXES, key=len, reverse=True)
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


def data_suffix(path: Path) -> str:
    """The file's data suffix, compression included (`.jsonl.gz`), lower case; the last
    suffix (or "") when it is not one of `SUFFIXES`."""
    name = path.name.lower()
    return next((suffix for suffix in _LONGEST_FIRST if name.endswith(suffix)), path.suffix.lower())


def read_file(path: Path, hasher: "hashlib._Hash") -> Iterator[RawRecord]:
    """Yield the records of one local file; its suffix picks the reader.

    Args:
        path: a file with one of `SUFFIXES`.
        hasher: fed the (decompressed) bytes read, for the source fingerprint.

    Raises:
        DataError: an unsupported suffix, a `.json` file that does not parse, or a `.gz` file
            that is not valid gzip (raised when the reader reaches the damage).
    """
    suffix = data_suffix(path)
    if suffix not in SUFFIXES:
        raise DataError(f"{path}: unsupported file type {suffix or '(none)'!r}; use one of {', '.join(SUFFIXES)}")
    try:
        if suffix in (".jsonl", ".jsonl.gz"):
            yield from _read_jsonl(path, hasher)
        elif suffix in (".json", ".json.gz"):
            yield from _read_json(path, hasher)
        elif suffix in (".csv", ".csv.gz"):
            _hash_file(path, hasher)
            yield from _read_csv(path)
        else:
            _hash_file(path, hasher)
            yield from _read_parquet(path)
    except (gzip.BadGzipFile, EOFError, zlib.error) as error:
        raise DataError(
            f"{path} is not a readable gzip file ({error}); re-compress it with gzip, or decompress it"
        ) from error


def list_folder(folder: Path) -> list[Path]:
    """The supported files under `folder` (recursively, hidden ones skipped), sorted."""
    files = sorted(
        p
        for p in folder.rglob("*")
        if p.is_file()
        and data_suffix(p) in SUFFIXES
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )
    if not files:
        raise DataError(f"folder {folder} holds no {', '.join(SUFFIXES)} files; point at a data file or folder")
    return files


def _open_bytes(path: Path) -> BinaryIO:
    return gzip.open(path, "rb") if path.name.lower().endswith(".gz") else path.open("rb")


def _read_jsonl(path: Path, hasher: "hashlib._Hash") -> Iterator[RawRecord]:
    with _open_bytes(path) as handle:
        for line_number, raw in enumerate(handle, start=1):
            hasher.update(raw)
            if line_number == 1 and raw.startswith(BOM):
                raw = raw[len(BOM) :]  # a byte-order mark is not part of the first record
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
        detail = f"line {line_number} is not valid JSON: {_problem(error)} at column {error.colno}"
        return RawRecord(line_number, UNPARSED, text, "invalid_json", detail)
    except RecursionError:  # hostile nesting deeper than the parser's stack
        detail = f"line {line_number} nests JSON too deeply to parse; flatten the record"
        return RawRecord(line_number, UNPARSED, text, "invalid_json", detail)


def _problem(error: json.JSONDecodeError) -> str:
    # Some messages end with "at" ("Unterminated string starting at"); the position follows.
    return error.msg.removesuffix(" at")


def _read_json(path: Path, hasher: "hashlib._Hash") -> Iterator[RawRecord]:
    with _open_bytes(path) as handle:
        data = handle.read()
    hasher.update(data)
    # Undecodable bytes become lone surrogates, which validation reports as invalid_unicode;
    # utf-8-sig drops a leading byte-order mark.
    text = data.decode("utf-8-sig", errors="surrogateescape")
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
            f"{path} is not valid JSON ({_problem(error)} at line {error.lineno}, column {error.colno}); "
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
        encoding="utf-8-sig",  # a leading byte-order mark would otherwise stick to the first column name
        encoding_errors="surrogateescape",
        compression="gzip" if path.name.lower().endswith(".gz") else None,
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
    with _open_bytes(path) as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            hasher.update(block)
