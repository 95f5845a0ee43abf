"""Frame helpers shared by loading, validation, audit and split.

Text columns are stored as pandas' Arrow-backed `str` dtype when every value is a string or
null (compact, vectorised), and as `object` otherwise: junk values (numbers, lone surrogates)
must survive loading so validation can name them.
"""

import json
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from simpo_core.data.schema import CANONICAL_COLUMNS


def text_series(values: list) -> pd.Series:
    """A `str` Series when all values are strings/None, else an `object` Series."""
    try:
        array = pa.array(values, type=pa.large_string(), from_pandas=True)
    except (pa.ArrowTypeError, pa.ArrowInvalid, UnicodeEncodeError, TypeError):
        return object_series(values)
    return pd.Series(array, dtype="str")


def object_series(values: list) -> pd.Series:
    """An `object` Series holding each value as it is (lists and tuples stay single values)."""
    array = np.empty(len(values), dtype=object)
    for index, value in enumerate(values):
        array[index] = value
    return pd.Series(array, dtype=object)


def chunk_frame(columns: dict[str, list]) -> pd.DataFrame:
    """One chunk of loaded rows as a frame (see `simpo_core.data.loading.FRAME_COLUMNS`)."""
    return pd.DataFrame(
        {
            "prompt": object_series(columns["prompt"]),
            "chosen": text_series(columns["chosen"]),
            "rejected": text_series(columns["rejected"]),
            "source_row": np.asarray(columns["source_row"], dtype=np.int64),
            "source_file": pd.Series(columns["source_file"], dtype="str"),
            "record": text_series(columns["record"]),
            "load_reasons": object_series(columns["load_reasons"]),
            "load_details": object_series(columns["load_details"]),
        }
    )


def concat_chunks(chunks: list[pd.DataFrame], columns: tuple[str, ...]) -> pd.DataFrame:
    """Concatenate chunk frames into one frame with a 0..n-1 index."""
    if not chunks:
        frame = pd.DataFrame({name: pd.Series([], dtype=object) for name in columns})
        frame["source_row"] = frame["source_row"].astype(np.int64)
        return frame
    frame = chunks[0] if len(chunks) == 1 else pd.concat(chunks, ignore_index=True)
    frame["source_file"] = frame["source_file"].astype("category")
    return frame


def canonical_prompt_json(prompt: Any) -> str:
    """The prompt's canonical JSON: messages as `{"role", "content"}`, sorted keys, no spaces."""
    if hasattr(prompt, "tolist"):
        prompt = prompt.tolist()
    if isinstance(prompt, str):
        prompt = [{"role": "user", "content": prompt}]
    return json.dumps(prompt, ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=str)


def prompt_keys(prompts: pd.Series) -> pd.Series:
    """`canonical_prompt_json` of every prompt, aligned with `prompts`."""
    return pd.Series([canonical_prompt_json(p) for p in prompts], index=prompts.index, dtype=object)


def canonical_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """The canonical columns (`prompt` as plain lists, texts as `str`) plus provenance columns."""
    keep = [c for c in (*CANONICAL_COLUMNS, "source_row", "source_file") if c in frame.columns]
    out = frame[keep].reset_index(drop=True)
    out["chosen"] = out["chosen"].astype("str")
    out["rejected"] = out["rejected"].astype("str")
    return out
