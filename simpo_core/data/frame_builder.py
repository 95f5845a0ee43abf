"""Turn streams of raw records into frames of canonical rows, choosing each row's layout.

A stream's layout is detected from its first `DETECT_SAMPLE` parsed records (the most common
one), unless a format is forced. A file may mix layouts: a row that cannot be read in the
stream's layout but is recognisably another one is read in that one, so no row valid in its
own layout is quarantined for another's reasons. `LoadResult.formats` counts the rows read in
each layout. Records whose keys match no layout are rows with reason `unknown_layout`.
"""

import logging
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import chain, islice
from typing import Any

from simpo_core.data.layouts import (
    LAYOUTS,
    Normalised,
    detect_layout,
    guess_layout,
    normalise_record,
)
from simpo_core.data.readers import CHUNK_ROWS, UNPARSED, RawRecord
from simpo_core.errors import ConfigError

logger = logging.getLogger(__name__)

DETECT_SAMPLE = 1000  # records looked at to detect a stream's layout
MIXED = "mixed"  # the format of a source whose rows were read in more than one layout
UNKNOWN = "unknown"  # the layout of rows (and sources) that match none
FRAME_COLUMNS = (
    "prompt",
    "chosen",
    "rejected",
    "source_row",
    "source_file",
    "record",
    "load_reasons",
    "load_details",
)


@dataclass
class LoadResult:
    """Every record of a source, one row each (columns: `FRAME_COLUMNS`).

    `load_reasons` is a tuple of reason codes, empty when the record was reshaped into the
    canonical row; `load_details` says the same in words, with the line or field. `format`
    is the layout the rows were read in, `mixed` when there were several (then `formats`,
    rows per layout, says which).
    """

    rows: Any  # pandas.DataFrame
    fingerprint: str
    source: str
    format: str
    total: int
    formats: dict[str, int] = field(default_factory=dict)  # layout -> rows read in it


def source_format(formats: dict[str, int]) -> str:
    """The one layout of `formats` (rows per layout), `mixed` for several, `unknown` for none."""
    used = [layout for layout, rows in formats.items() if rows] or list(formats)
    return used[0] if len(used) == 1 else MIXED if used else UNKNOWN


def choose_layout(value: Any, stream_layout: str | None) -> tuple[str, Normalised]:
    """Normalise one parsed record of a stream whose detected layout is `stream_layout`
    (None: nothing recognisable). Returns the layout it was read in and the result.

    The stream's layout is tried first, so a broken row keeps that layout's reasons; the
    record's own layout wins when it reads cleanly, or when the stream's layout found its
    fields absent (the record is not of that layout at all)."""
    first = normalise_record(value, stream_layout) if stream_layout is not None else None
    if first is not None and not first[3]:
        return stream_layout, first
    guess = guess_layout(value)
    if guess is None or guess == stream_layout:
        if first is not None:
            return stream_layout, first
        if isinstance(value, dict):
            return UNKNOWN, (None, None, None, ("unknown_layout",), (unknown_layout_detail(value),))
        return UNKNOWN, normalise_record(value, "flat")  # not an object, whatever the layout
    own = normalise_record(value, guess)
    if first is None or not own[3] or first[3] == ("missing_field",):
        return guess, own
    return stream_layout, first


def unknown_layout_detail(record: dict) -> str:
    """What to say about a record whose keys match no supported layout."""
    keys = ", ".join(map(str, list(record)[:10])) + (", ..." if len(record) > 10 else "")
    return (
        f"no supported layout matches these keys: {keys or '(none)'}; supported: {', '.join(LAYOUTS)} "
        "(see docs/data.md); rename the fields or convert the file"
    )


class FrameBuilder:
    """Collects normalised rows in column lists and turns them into frames chunk by chunk;
    keeps the frames, or hands each to `on_chunk` and forgets it."""

    def __init__(self, on_chunk: Callable[[Any], None] | None = None, chunk_rows: int = CHUNK_ROWS) -> None:
        if chunk_rows < 1:
            raise ConfigError(f"chunk_rows must be a positive number of rows, got {chunk_rows}")
        self.chunks: list[Any] = []
        self.on_chunk = on_chunk
        self.chunk_rows = chunk_rows
        self.handed_over = 0  # rows given to on_chunk
        self.formats: Counter = Counter()  # layout -> rows, over every stream
        self._columns: dict[str, list] = {name: [] for name in FRAME_COLUMNS}

    def add_stream(self, raws: Iterator[RawRecord], source_file: str, format: str | None) -> dict[str, int]:
        """Normalise every record of one stream (`format` forces a layout for all of them).

        Returns:
            Rows per layout they were read in; rows that could not be parsed count under
            the stream's layout.
        """
        raws = iter(raws)
        head = list(islice(raws, DETECT_SAMPLE))
        layout = format or detect_layout(r.value for r in head if r.value is not UNPARSED and r.reason is None)
        counts: Counter = Counter()
        columns = self._columns
        if format is not None:
            counts[format] = 0  # an empty stream still reports the forced layout
        for raw in chain(head, raws):
            if raw.reason is not None:
                used, normalised = layout or UNKNOWN, (None, None, None, (raw.reason,), (raw.detail,))
            elif format is not None:
                used, normalised = format, normalise_record(raw.value, format)
            else:
                used, normalised = choose_layout(raw.value, layout)
            counts[used] += 1
            prompt, chosen, rejected, reasons, details = normalised
            for name, value in zip(
                FRAME_COLUMNS, (prompt, chosen, rejected, raw.source_row, source_file, raw.text, reasons, details)
            ):
                columns[name].append(value)
            if len(columns["source_row"]) >= self.chunk_rows:
                self._flush()
        self.formats.update(counts)
        _log_stream(source_file, dict(counts))
        return dict(counts)

    def result(self, source: str, fingerprint: str) -> LoadResult:
        """The `LoadResult` of every stream added (the last chunk is flushed first)."""
        from simpo_core.data.frames import concat_chunks

        self._flush()
        rows = concat_chunks(self.chunks, FRAME_COLUMNS)
        self.chunks = []
        total = len(rows) + self.handed_over
        formats = dict(self.formats.most_common())
        detected = source_format(formats)
        logger.info("loaded %d records from %s (%s)", total, source, detected)
        return LoadResult(rows, fingerprint, source, detected, total, formats)

    def _flush(self) -> None:
        from simpo_core.data.frames import chunk_frame

        if not self._columns["source_row"]:
            return
        chunk = chunk_frame(self._columns)
        for values in self._columns.values():
            values.clear()  # in place: add_stream holds a reference to these lists
        if self.on_chunk is None:
            self.chunks.append(chunk)
        else:
            self.handed_over += len(chunk)
            self.on_chunk(chunk)


def _log_stream(source_file: str, counts: dict[str, int]) -> None:
    layout = source_format(counts)
    if layout == MIXED:
        rows = ", ".join(f"{name} {n} rows" for name, n in sorted(counts.items(), key=lambda item: -item[1]))
        logger.warning("%s mixes layouts (%s); each row is read in its own", source_file, rows)
    elif layout == UNKNOWN and counts:
        logger.warning("%s: no record matches a supported layout (%s)", source_file, ", ".join(LAYOUTS))
    else:
        logger.info("read %s (%s layout)", source_file, layout)
