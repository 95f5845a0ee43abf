"""The record of the rows a training used, so a later run can replay exactly those rows.

`data.replay` mixes a share of the champion's training data into a new training. Reading
the champion's sources again would give today's contents (an export rewritten since, a
hub dataset with a new revision) or nothing at all (a file moved). So every training
records its validated rows (after the audit, before the split; without the rows it
replayed itself, so replays do not compound) in one Parquet file, identified by the
file's SHA-256; replay reads that file and refuses one whose digest does not match.
"""

import hashlib
import logging
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from simpo_core.errors import DataError

SOURCE_NAME_COLUMN = "source_name"  # written by the mix: which source a row came from
BATCH_ROWS = 65_536
HASH_CHUNK_BYTES = 16 * 2**20
logger = logging.getLogger(__name__)


def write_row_record(valid_path: Path, out_path: Path, exclude_sources: list[str] = ()) -> str:
    """Copy the validated rows to `out_path`, without those of `exclude_sources`; return its SHA-256.

    Streams in batches, so the record of a large training never sits in memory whole.

    Args:
        valid_path: the validated rows the split read (`valid.parquet`).
        out_path: the record file to write (Parquet).
        exclude_sources: names of sources (in the `source_name` column of a mix) to leave out.
    """
    source = pq.ParquetFile(valid_path)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    excluded = list(exclude_sources) if SOURCE_NAME_COLUMN in source.schema_arrow.names else []
    with pq.ParquetWriter(out_path, source.schema_arrow) as writer:
        for batch in source.iter_batches(batch_size=BATCH_ROWS):
            if excluded:
                batch = batch.filter(
                    pc.invert(pc.is_in(batch.column(SOURCE_NAME_COLUMN), value_set=pa.array(excluded)))
                )
            writer.write_batch(batch)
    return file_sha256(out_path)


def check_row_record(path: Path, expected: str, what: str) -> Path:
    """`path` when its SHA-256 is `expected`.

    Raises:
        DataError: the record is missing or its content is not the recorded one.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{what}: the record of training rows {path} is missing")
    found = file_sha256(path)
    if found != expected:
        raise DataError(
            f"{what}: the record of training rows {path} does not match its digest (sha256 {found[:12]}, "
            f"recorded {expected[:12]}); it was changed or damaged, so it is not replayed"
        )
    return path


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's content, streamed (a multi-GB checkpoint never sits in memory)."""
    size = path.stat().st_size
    if size > 1024 * HASH_CHUNK_BYTES:
        logger.info("hashing %s (%.1f GB) once for the training identity", path, size / 1e9)
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()
