"""Load preference data from any supported source into one frame, losing no record.

Sources: a local `.json`/`.jsonl`/`.parquet`/`.csv` file (the text ones also gzipped,
`.jsonl.gz`), a folder of them (or a folder written by `datasets.save_to_disk`), a `datasets` hub id `name[:config][@split]` (read from
the local cache when offline), or `synthetic[:n=N,bias=X,seed=S]`. Every input record
becomes one row: canonical `prompt`/`chosen`/`rejected` where it could be reshaped, and
`load_reasons` where it could not (an unparsable JSONL line is a row, not a crash).
Validation (`simpo_core.data.validation`) then decides, row by row, what is usable.
Layouts are chosen per file and per row by `simpo_core.data.frame_builder`.
"""

import hashlib
import logging
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from simpo_core.data.frame_builder import FRAME_COLUMNS as FRAME_COLUMNS
from simpo_core.data.frame_builder import FrameBuilder, LoadResult
from simpo_core.data.layouts import LAYOUTS
from simpo_core.data.readers import CHUNK_ROWS, SUFFIXES, RawRecord, data_suffix, list_folder, read_file, record_text
from simpo_core.errors import ConfigError, DataError

logger = logging.getLogger(__name__)

SYNTHETIC = "synthetic"
SYNTHETIC_DEFAULTS = {"n": 2000, "bias": 0.0, "seed": 0}
_PATH_LIKE_SUFFIXES = SUFFIXES


def load_preferences(
    source: str,
    format: str | None = None,
    *,
    on_chunk: Callable[[Any], None] | None = None,
    chunk_rows: int = CHUNK_ROWS,
) -> LoadResult:
    """Load every record of `source` and normalise it to the canonical row.

    Args:
        source: a file, a folder, a hub id `name[:config][@split]`, or
            `synthetic[:n=N,bias=X,seed=S]` (defaults n=2000, bias=0.0, seed=0).
        format: force a layout (one of `LAYOUTS`) on every record; None detects it per file
            from the first records, and per row where a file mixes layouts.
        on_chunk: when given, each frame of at most `chunk_rows` rows (columns `FRAME_COLUMNS`,
            index 0..k-1, in source order) is handed to it as soon as it is built and not kept,
            so memory stays bounded; the result's `rows` is then empty.
        chunk_rows: rows per chunk frame.

    Returns:
        A `LoadResult`; `total == len(rows)`, or the number of rows handed to `on_chunk`.

    Raises:
        ConfigError: unknown `format` or a malformed `synthetic:` spec.
        DataError: a missing path, an unreadable file, or a hub id not in the local cache.
    """
    if format is not None and format not in LAYOUTS:
        raise ConfigError(f"unknown data format {format!r}; use one of {', '.join(LAYOUTS)} or leave it out to detect")
    builder = FrameBuilder(on_chunk, chunk_rows)
    if source == SYNTHETIC or source.startswith(SYNTHETIC + ":"):
        return _load_synthetic(source, format, builder)
    path = Path(source).expanduser()
    if path.is_dir() and (path / "state.json").exists() and (path / "dataset_info.json").exists():
        return _load_hf_dataset(source, format, builder, from_disk=True)
    if path.is_dir():
        return _load_files(source, list_folder(path), format, path, builder)
    if path.is_file():
        return _load_files(source, [path], format, path.parent, builder)
    if source.lower().endswith(_PATH_LIKE_SUFFIXES) or source.startswith((".", "/", "~")):
        raise DataError(f"data file {source} does not exist; check the path (or pass 'synthetic')")
    return _load_hf_dataset(source, format, builder)


def is_local_source(source: str) -> bool:
    """True for generated data and for anything that names a local path (existing or not)."""
    if source == SYNTHETIC or source.startswith(SYNTHETIC + ":"):
        return True
    return (
        Path(source).expanduser().exists()
        or source.lower().endswith(_PATH_LIKE_SUFFIXES)
        or source.startswith((".", "/", "~"))
    )


def check_source(source: str) -> str:
    """Refuse a source that cannot be read, before any work starts; return its kind.

    Cheap for local sources (no record is parsed); a hub id is opened, which fills the
    local cache when the hub is reachable.

    Returns:
        "synthetic", "file", "folder", "saved-dataset" or "hub".

    Raises:
        ConfigError: a malformed `synthetic:` spec.
        DataError: a missing path, an unsupported file type, a folder without data files,
            or a hub id that cannot be opened.
    """
    if source == SYNTHETIC or source.startswith(SYNTHETIC + ":"):
        parse_synthetic_spec(source)
        return "synthetic"
    path = Path(source).expanduser()
    if path.is_dir() and (path / "state.json").exists() and (path / "dataset_info.json").exists():
        return "saved-dataset"
    if path.is_dir():
        list_folder(path)
        return "folder"
    if path.is_file():
        if data_suffix(path) not in SUFFIXES:
            raise DataError(
                f"{source}: unsupported file type {data_suffix(path) or '(none)'!r}; use one of {', '.join(SUFFIXES)}"
            )
        return "file"
    if source.lower().endswith(_PATH_LIKE_SUFFIXES) or source.startswith((".", "/", "~")):
        raise DataError(f"data file {source} does not exist; check the path (or pass 'synthetic')")
    _open_hf_dataset(source, from_disk=False)
    return "hub"


def load_records(records: Iterable[Any], source: str = "memory", format: str | None = None) -> LoadResult:
    """Load records already in memory (dicts, or anything JSON-like) like a file's."""
    if format is not None and format not in LAYOUTS:
        raise ConfigError(f"unknown data format {format!r}; use one of {', '.join(LAYOUTS)}")
    hasher = hashlib.sha256()
    raws = (_hashed(RawRecord(i, r, record_text(r)), hasher) for i, r in enumerate(records, start=1))
    builder = FrameBuilder()
    builder.add_stream(raws, source, format)
    return builder.result(source, hasher.hexdigest())


def _load_files(source: str, files: list[Path], format: str | None, base: Path, builder: FrameBuilder) -> LoadResult:
    hasher = hashlib.sha256()
    for path in files:
        name = str(path.relative_to(base)) if len(files) > 1 else str(path)
        hasher.update(name.encode("utf-8", errors="surrogateescape") + b"\0")
        builder.add_stream(read_file(path, hasher), name, format)
    return builder.result(source, hasher.hexdigest())


def _load_synthetic(source: str, format: str | None, builder: FrameBuilder) -> LoadResult:
    from simpo_core.data.synthetic import generate_pairs

    options = parse_synthetic_spec(source)
    try:
        pairs = generate_pairs(int(options["n"]), float(options["bias"]), seed=int(options["seed"]))
    except ValueError as error:
        raise ConfigError(f"{source}: {error}") from error
    identity = f"synthetic:n={int(options['n'])},bias={float(options['bias'])},seed={int(options['seed'])}"
    raws = (RawRecord(i, pair, record_text(pair)) for i, pair in enumerate(pairs, start=1))
    builder.add_stream(raws, SYNTHETIC, format or "flat")
    return builder.result(source, hashlib.sha256(identity.encode()).hexdigest())


def parse_synthetic_spec(source: str) -> dict[str, float]:
    """`synthetic:n=500,bias=0.3,seed=1` -> {"n": 500, "bias": 0.3, "seed": 1} (defaults filled)."""
    options: dict[str, float] = dict(SYNTHETIC_DEFAULTS)
    _, _, spec = source.partition(":")
    for item in filter(None, (part.strip() for part in spec.split(","))):
        key, sep, value = item.partition("=")
        if not sep or key not in SYNTHETIC_DEFAULTS:
            raise ConfigError(f"bad synthetic option {item!r} in {source!r}; use e.g. synthetic:n=500,bias=0.3,seed=1")
        try:
            options[key] = float(value)
        except ValueError as error:
            raise ConfigError(f"synthetic option {key} must be a number, got {value!r}") from error
    return options


def parse_hub_id(source: str) -> tuple[str, str | None, str]:
    """`name[:config][@split]` -> (name, config or None, split; default `train`)."""
    rest, _, split = source.partition("@")
    name, _, config = rest.partition(":")
    if not name:
        raise DataError(f"bad dataset id {source!r}; use name[:config][@split], e.g. org/prefs:default@train")
    return name, config or None, split or "train"


def _load_hf_dataset(source: str, format: str | None, builder: FrameBuilder, from_disk: bool = False) -> LoadResult:
    dataset, identity = _open_hf_dataset(source, from_disk)
    hasher = hashlib.sha256(f"{identity}:{getattr(dataset, '_fingerprint', '')}".encode())
    builder.add_stream(_dataset_records(dataset), source, format)
    return builder.result(source, hasher.hexdigest())


def _open_hf_dataset(source: str, from_disk: bool) -> tuple[Any, str]:
    import datasets

    if from_disk:
        dataset = datasets.load_from_disk(source)
        if isinstance(dataset, datasets.DatasetDict):
            dataset = dataset["train"] if "train" in dataset else next(iter(dataset.values()))
        return dataset, f"disk:{Path(source).resolve()}"
    name, config, split = parse_hub_id(source)
    try:
        dataset = datasets.load_dataset(name, config, split=split)
    except Exception as error:  # datasets raises many types for "not cached" / "no network"
        raise DataError(
            f"could not load dataset {source!r} (name={name}, config={config}, split={split}): {error}. "
            "Offline mode is on by default: use a dataset already in the Hugging Face cache, a local "
            "file or folder, or set HF_HUB_OFFLINE=0 and HF_DATASETS_OFFLINE=0 where the hub is reachable."
        ) from error
    return dataset, f"hub:{name}:{config}@{split}"


def _dataset_records(dataset: Any) -> Iterator[RawRecord]:
    row_number = 0
    for batch in dataset.iter(batch_size=CHUNK_ROWS):
        columns = list(batch)
        for values in zip(*(batch[c] for c in columns)):
            row_number += 1
            record = dict(zip(columns, values))
            yield RawRecord(row_number, record, record_text(record))


def _hashed(raw: RawRecord, hasher: "hashlib._Hash") -> RawRecord:
    hasher.update(raw.text.encode("utf-8", errors="surrogateescape") + b"\n")
    return raw
