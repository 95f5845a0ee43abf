"""Reading and writing the mix a batch at a time, so its memory does not grow with the sources.

`mix_sources` (`simpo_core.data.mix`) makes two passes over each source's `valid.parquet`.
The first reads only the prompt and the two answers, a batch at a time, and keeps what the
selection needs: a 16-byte pair digest and an 8-byte prompt position per row. The second
(`write_picks`) reads the picked rows' batches again and appends them to one Parquet writer,
so only a batch of one source and about a batch of output rows are in memory at once.

Sources written at different times may not share a Parquet schema (a message field only one
source has, a column typed null because every value was null, `string` beside
`large_string`): the output's schema is the sources' schemas unified, each batch is cast to
it, and missing columns or fields are null, as a concatenation of the whole frames gives.
"""

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from simpo_core.data.readers import CHUNK_ROWS
from simpo_core.data.validation_stream import DIGEST_BYTES, pair_digests
from simpo_core.errors import DataError

SCAN_COLUMNS = ["prompt", "chosen", "rejected"]  # all the selection looks at
BATCH_ROWS = CHUNK_ROWS  # rows read at a time, in both passes


def scan_source(path: Path, positions: Callable[[pd.DataFrame], np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """`(digests, positions)` of every row of `path`, in file order: the pair digests (S16)
    and `positions(frame)` (float), computed a batch of `BATCH_ROWS` rows at a time."""
    with pq.ParquetFile(path, pre_buffer=False) as source:  # pre-buffering holds whole row groups
        rows = source.metadata.num_rows
        digests, places, at = np.empty(rows, dtype=f"S{DIGEST_BYTES}"), np.empty(rows, dtype=np.float64), 0
        for batch in source.iter_batches(batch_size=BATCH_ROWS, columns=SCAN_COLUMNS):
            if batch.num_rows:
                frame = batch.to_pandas()
                digests[at : at + len(frame)] = pair_digests(frame)
                places[at : at + len(frame)] = positions(frame)
                at += len(frame)
    return digests, places


def mixed_schema(paths: list[Path], name_column: str) -> pa.Schema:
    """The output's schema: the sources' columns unified, in order of first appearance, with
    `source_file` as a plain string (each source has its own dictionary) and `name_column`.

    Raises:
        DataError: two sources type a column in ways no cast reconciles.
    """
    schemas = []
    for path in paths:
        schema = pq.read_schema(path).remove_metadata()  # the pandas metadata of one source misleads
        at = schema.get_field_index("source_file")
        if at >= 0:
            schema = schema.set(at, pa.field("source_file", pa.large_string()))
        schemas.append(schema.append(pa.field(name_column, pa.large_string())))
    try:
        return pa.unify_schemas(schemas, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as error:
        raise DataError(
            f"the valid rows of {', '.join(str(p) for p in paths)} have columns of incompatible types ({error}); "
            "mix sources validated by the same version, or revalidate them"
        ) from error


def write_picks(picks: list[tuple[Path, np.ndarray, str]], out_path: Path, name_column: str) -> int:
    """Append the picked rows of each source, in source and file order, to `out_path`.

    Args:
        picks: `(valid_path, rows, name)` per source: `rows` the sorted row numbers to keep,
            `name` the value of `name_column` on them.
        out_path: the Parquet file to write (its folder exists).
        name_column: the column naming each row's source.

    Returns:
        The number of rows written.
    """
    # Only sources that give rows shape the schema (an empty file may type every column double).
    schema = mixed_schema([path for path, rows, _ in picks if len(rows)], name_column)
    pending: list[pa.Table] = []
    written = 0
    with pq.ParquetWriter(out_path, schema) as writer:
        for path, rows, name in picks:
            for table in _picked(path, rows, name, name_column):
                pending.append(_conform(table, schema))
                if sum(len(t) for t in pending) >= BATCH_ROWS:  # row groups of a batch or more, not a few picks
                    written += _flush(writer, pending)
        written += _flush(writer, pending)
    return written


def _picked(path: Path, rows: np.ndarray, name: str, name_column: str) -> Iterator[pa.Table]:
    """The rows of `path` numbered in `rows` (sorted), a batch at a time, with `name_column`."""
    if not len(rows):
        return
    offset = 0
    with pq.ParquetFile(path, pre_buffer=False) as source:
        for batch in source.iter_batches(batch_size=BATCH_ROWS):
            low, high = np.searchsorted(rows, [offset, offset + batch.num_rows])
            if high > low:
                table = pa.Table.from_batches([batch]).take(pa.array(rows[low:high] - offset))
                yield table.append_column(name_column, pa.array([name] * len(table), pa.large_string()))
            offset += batch.num_rows


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """`table` with `schema`'s columns in its order (null where it has none), cast to it."""
    columns = [
        table.column(field.name) if field.name in table.column_names else pa.nulls(len(table), field.type)
        for field in schema
    ]
    table = pa.Table.from_arrays(columns, names=schema.names)
    try:
        return table.cast(schema)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        # Arrow casts some nested types only through Python values (a struct gaining fields).
        return pa.Table.from_pylist(table.to_pylist(), schema=schema)


def _flush(writer: pq.ParquetWriter, pending: list[pa.Table]) -> int:
    if not pending:
        return 0
    table = pa.concat_tables(pending)
    writer.write_table(table)
    pending.clear()
    return len(table)
