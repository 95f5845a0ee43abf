"""Deterministic held-out split by prompt: the same prompt always lands on the same side.

Each prompt's canonical JSON is hashed with a salt (BLAKE2b, stable across Python and pandas
versions) into a number u in [0, 1); the pair is held out when u < heldout_fraction. The
split therefore depends on nothing but the prompt and the salt: reruns, shuffled rows and
appended data keep every earlier prompt where it was, and no prompt is ever on both sides.
"""

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from simpo_core.data.frames import canonical_prompt_json
from simpo_core.data.readers import CHUNK_ROWS
from simpo_core.data.settings import SplitSettings
from simpo_core.errors import ConfigError, DataError

logger = logging.getLogger(__name__)

_SCALE = float(1 << 64)
TRAIN_FILE = "train.parquet"
HELDOUT_FILE = "heldout.parquet"


def prompt_fraction(prompt_json: str, salt: str) -> float:
    """The prompt's position in [0, 1) under `salt`."""
    digest = hashlib.blake2b(prompt_json.encode("utf-8"), digest_size=8, key=salt.encode("utf-8")[:64])
    return int.from_bytes(digest.digest(), "big") / _SCALE


def heldout_mask(frame: pd.DataFrame, heldout_fraction: float, salt: str = "simpo") -> np.ndarray:
    """Boolean (N,): True for the rows whose prompt falls in the held-out share."""
    positions = np.fromiter(
        (prompt_fraction(canonical_prompt_json(p), salt) for p in frame["prompt"]), dtype=np.float64, count=len(frame)
    )
    return positions < heldout_fraction


def split_holdout(
    frame: pd.DataFrame, heldout_fraction: float = 0.1, salt: str = "simpo"
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split canonical rows into (train, held-out) by a salted hash of the prompt.

    Args:
        frame: canonical rows with a `prompt` column.
        heldout_fraction: expected share of prompts held out, in (0, 1).
        salt: change it to draw a different, equally stable split.

    Returns:
        `(train, heldout)`, each keeping the input's row order and a fresh 0..n-1 index.

    Raises:
        ConfigError: `heldout_fraction` outside (0, 1).
        DataError: either side would be empty (too few distinct prompts for the fraction).
    """
    if not 0.0 < heldout_fraction < 1.0:
        raise ConfigError(f"heldout_fraction must be in (0, 1), got {heldout_fraction}")
    mask = heldout_mask(frame, heldout_fraction, salt)
    train, heldout = frame[~mask].reset_index(drop=True), frame[mask].reset_index(drop=True)
    if train.empty or heldout.empty:
        empty = "held-out" if heldout.empty else "training"
        raise DataError(
            f"the {empty} split is empty: {len(frame)} rows with "
            f"{frame['prompt'].map(canonical_prompt_json).nunique() if len(frame) else 0} distinct prompts "
            f"at heldout_fraction={heldout_fraction}. Add data with more distinct prompts, or change the "
            "fraction (or the salt)."
        )
    logger.info(
        "split %d rows: %d train, %d held out (fraction %.3f)", len(frame), len(train), len(heldout), heldout_fraction
    )
    return train, heldout


@dataclass
class SplitResult:
    """The two files the split step wrote and their sizes."""

    train_path: Path
    heldout_path: Path
    train_pairs: int
    heldout_pairs: int


def write_split(valid_path: Path, out_dir: Path, settings: SplitSettings | None = None) -> SplitResult:
    """The split step: stream `valid_path` into `train.parquet` and `heldout.parquet` in
    `out_dir`, a chunk of rows at a time (the same rows, in order, as `split_holdout`).

    Raises:
        ConfigError: a held-out fraction outside (0, 1).
        DataError: either side would be empty (see `split_holdout`).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    settings = settings or SplitSettings()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    source = pq.ParquetFile(valid_path)
    paths = (out_dir / TRAIN_FILE, out_dir / HELDOUT_FILE)
    counts = [0, 0]
    with (
        pq.ParquetWriter(paths[0], source.schema_arrow) as train,
        pq.ParquetWriter(paths[1], source.schema_arrow) as held,
    ):
        for batch in source.iter_batches(batch_size=CHUNK_ROWS):
            mask = heldout_mask(batch.select(["prompt"]).to_pandas(), settings.heldout_fraction, settings.split_salt)
            train.write_batch(batch.filter(pa.array(~mask)))
            held.write_batch(batch.filter(pa.array(mask)))
            counts[0], counts[1] = counts[0] + int((~mask).sum()), counts[1] + int(mask.sum())
    source.close()
    if not all(counts):  # the in-memory split names the empty side and the distinct prompts
        split_holdout(pd.read_parquet(valid_path, columns=["prompt"]), settings.heldout_fraction, settings.split_salt)
    logger.info("split %d rows: %d train, %d held out", sum(counts), *counts)
    return SplitResult(paths[0], paths[1], counts[0], counts[1])
