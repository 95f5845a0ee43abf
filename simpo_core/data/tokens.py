"""Token lengths with a model's tokenizer: batched, and exact shortcuts where they exist.

A byte-level tokenizer (ByT5, the embedded `tiny` model's) gives one token per UTF-8 byte,
so lengths are byte counts computed by Arrow in C; only texts containing a special-token
string (which the tokenizer keeps as one token) go through the tokenizer itself.
"""

import logging
import re
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

logger = logging.getLogger(__name__)

BATCH_SIZE = 2048
_BYTE_LEVEL_TOKENIZERS = ("ByT5Tokenizer",)


def count_tokens(texts: pd.Series, tokenizer: Any, batch_size: int = BATCH_SIZE) -> np.ndarray:
    """Number of tokens of each text, without special tokens added by the tokenizer.

    Args:
        texts: strings, shape (N,).
        tokenizer: a Hugging Face tokenizer.
        batch_size: texts per tokenizer call.

    Returns:
        int64 array of shape (N,).
    """
    values = [t if isinstance(t, str) else "" for t in texts] if texts.dtype == object else texts
    if type(tokenizer).__name__ in _BYTE_LEVEL_TOKENIZERS:
        return _byte_level_lengths(pa.array(values, type=pa.large_string(), from_pandas=True), tokenizer)
    values = list(values)
    lengths = np.empty(len(values), dtype=np.int64)
    for start in range(0, len(values), batch_size):
        batch = values[start : start + batch_size]
        lengths[start : start + len(batch)] = _tokenize_lengths(batch, tokenizer)
    return lengths


def count_prompt_tokens(prompts: pd.Series, tokenizer: Any) -> np.ndarray:
    """Tokens of each prompt as the model sees it: the chat template (with the generation
    prompt) when the tokenizer has one, else the turns joined by newlines."""
    return count_tokens(pd.Series([render_prompt(p, tokenizer) for p in prompts], dtype=object), tokenizer)


def render_prompt(prompt: Any, tokenizer: Any) -> str:
    """The prompt text a model is fed before the response."""
    messages = list(prompt.tolist() if hasattr(prompt, "tolist") else prompt)
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return "\n".join(str(m["content"]) for m in messages)


def _tokenize_lengths(batch: list[str], tokenizer: Any) -> list[int]:
    encoded = tokenizer(
        batch, add_special_tokens=False, return_attention_mask=False, return_token_type_ids=False, verbose=False
    )
    return [len(ids) for ids in encoded["input_ids"]]


def _byte_level_lengths(array: pa.Array, tokenizer: Any) -> np.ndarray:
    lengths = pc.binary_length(array).fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
    pattern = _special_token_pattern(tokenizer)
    if pattern and len(array):
        special = pc.match_substring_regex(array, pattern).fill_null(False).to_numpy(zero_copy_only=False)
        rows = np.flatnonzero(special)
        if len(rows):
            texts = [array[int(i)].as_py() for i in rows]
            lengths[rows] = _tokenize_lengths(texts, tokenizer)
    return lengths


def _special_token_pattern(tokenizer: Any) -> str:
    tokens = set(getattr(tokenizer, "all_special_tokens", ())) | set(getattr(tokenizer, "added_tokens_encoder", {}))
    return "|".join(sorted((re.escape(t) for t in tokens if t), key=len, reverse=True))
