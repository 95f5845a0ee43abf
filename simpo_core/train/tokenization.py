"""Turn preference pairs into token ids, truncate them, and collate them for one forward.

A pair becomes two sequences that share the prompt:

    prompt ids  = the chat template rendered with a generation prompt (BOS once, if any)
    chosen ids  = prompt ids + response ids + EOS (EOS once)
    rejected ids likewise

When `len(prompt) + len(longer response) > max_length` and the prompt is longer than
`max_prompt_length`, the prompt is shortened to that many tokens turn by turn
(`prompt_format.fit_prompt_ids`: the system turn and the latest turn stay, the oldest
exchanges go first, then the start of the latest turn), then each response is cut to fit
`max_length`. Both sequences of a pair keep the same prompt. A response with no token left
is an error naming the row, never a 0/0 NaN later.
"""

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from simpo_core.data.schema import to_canonical
from simpo_core.errors import DataError
from simpo_core.train.loss import IGNORE_INDEX
from simpo_core.train.prompt_format import (  # noqa: F401 (re-exported: one rendering)
    fit_prompt_ids,
    quiet_length_warning,
    render_prompt_ids,
)


@dataclass(frozen=True)
class EncodedPair:
    """Token ids of one pair after truncation (lists of ints)."""

    prompt_ids: list[int]
    chosen_ids: list[int]
    rejected_ids: list[int]


def response_ids(tokenizer: Any, text: str) -> list[int]:
    """Response token ids followed by EOS exactly once (when the tokenizer has one)."""
    with quiet_length_warning():  # a long answer is measured on purpose, then truncated
        ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    eos = tokenizer.eos_token_id
    if eos is not None:
        while ids and ids[-1] == eos:
            ids.pop()
        ids.append(eos)
    return ids


def truncate_pair(
    prompt: list[int],
    chosen: list[int],
    rejected: list[int],
    max_length: int,
    max_prompt_length: int,
    keep_first: bool = False,
) -> tuple[list[int], list[int], list[int]]:
    """Fit `prompt + response` into `max_length` for both responses of a pair.

    First, only when the pair is too long, the prompt keeps its last `max_prompt_length`
    tokens (`keep_first` also keeps its first token, a BOS, within that budget); then each
    response keeps its first `max_length - len(prompt)` tokens.
    """
    if len(prompt) + max(len(chosen), len(rejected)) > max_length and len(prompt) > max_prompt_length:
        head = prompt[:1] if keep_first and max_prompt_length > 1 else []
        prompt = head + prompt[len(prompt) - (max_prompt_length - len(head)) :]
    room = max(max_length - len(prompt), 0)
    return prompt, chosen[:room], rejected[:room]


def encode_pair(
    tokenizer: Any, row: Mapping[str, Any], max_length: int, max_prompt_length: int, index: int = 0
) -> EncodedPair:
    """Tokenize and truncate one canonical or flat row.

    Raises:
        DataError: the row cannot be read as a pair, or a response has no token left after
            truncation (the message names the row index and the lengths).
    """
    try:
        pair = to_canonical(row)
    except (KeyError, TypeError) as error:
        raise DataError(f"row {index}: not a preference pair ({error}); it needs prompt, chosen and rejected") from None
    for name in ("chosen", "rejected"):
        if not isinstance(row[name], str):  # a missing value read from a table is NaN, whose str() is "nan"
            raise DataError(
                f"row {index}: {name} must be text, got {row[name]!r}; fill it in or drop the row "
                "(`simpo validate` quarantines such rows with their reasons)"
            )
    prompt = render_prompt_ids(tokenizer, pair["prompt"])
    if not prompt:
        raise DataError(
            f"row {index}: the prompt renders to no tokens; give it text or a chat template that renders it"
        )
    chosen = response_ids(tokenizer, pair["chosen"])
    rejected = response_ids(tokenizer, pair["rejected"])
    full_prompt_length = len(prompt)
    if full_prompt_length + max(len(chosen), len(rejected)) > max_length and full_prompt_length > max_prompt_length:
        # Whole turns first, keeping the system and latest turns; `truncate_pair` then only cuts answers.
        prompt = fit_prompt_ids(tokenizer, pair["prompt"], max_prompt_length)
    prompt, chosen, rejected = truncate_pair(prompt, chosen, rejected, max_length, max_prompt_length)
    for name, ids in (("chosen", chosen), ("rejected", rejected)):
        if not ids:
            raise DataError(
                f"row {index}: the {name} response is empty after truncation (prompt {full_prompt_length} tokens, "
                f"kept {len(prompt)}; max_length {max_length}, max_prompt_length {max_prompt_length}); "
                "give it text, or lower max_prompt_length / raise max_length"
            )
    return EncodedPair(prompt, chosen, rejected)


def encode_pairs(
    tokenizer: Any, rows: Iterable[Mapping[str, Any]], max_length: int, max_prompt_length: int
) -> list[EncodedPair]:
    """`encode_pair` over rows, in order; the first bad row raises a DataError naming it."""
    return [encode_pair(tokenizer, row, max_length, max_prompt_length, index) for index, row in enumerate(rows)]


def rows_from(data: Any) -> list[dict[str, Any]]:
    """Rows as a list of dicts from a list of mappings, a pandas DataFrame or a datasets.Dataset."""
    if data is None:
        return []
    if hasattr(data, "to_dict") and hasattr(data, "columns"):  # pandas DataFrame
        return data.to_dict(orient="records")
    if hasattr(data, "column_names") and hasattr(data, "to_list"):  # datasets.Dataset
        return data.to_list()
    rows = list(data)
    for index, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise DataError(
                f"row {index}: expected a mapping with prompt, chosen and rejected, got {type(row).__name__}"
            )
    return [dict(row) for row in rows]


def collate_pairs(pairs: Sequence[EncodedPair], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Pad B pairs into one `(2B, T)` batch: rows 0..B-1 chosen, rows B..2B-1 rejected.

    Returns:
        `input_ids` `(2B, T)` right-padded with `pad_token_id`; `attention_mask` `(2B, T)`;
        `labels` `(2B, T)` equal to `input_ids` on response tokens and `IGNORE_INDEX` on
        prompt and padding.
    """
    return pad_sequences(pair_sequences(pairs), pad_token_id)


def pair_sequences(pairs: Sequence[EncodedPair]) -> list[tuple[list[int], list[int]]]:
    """The 2B `(prompt, response)` sequences of B pairs: every chosen one, then every rejected one."""
    return [(p.prompt_ids, p.chosen_ids) for p in pairs] + [(p.prompt_ids, p.rejected_ids) for p in pairs]


def pad_sequences(sequences: Sequence[tuple[list[int], list[int]]], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Right-pad N `(prompt, response)` sequences into `(N, T)` `input_ids`, `attention_mask` and
    `labels` (the response tokens; `IGNORE_INDEX` on prompt and padding)."""
    width = max(len(prompt) + len(response) for prompt, response in sequences)
    input_ids = torch.full((len(sequences), width), pad_token_id, dtype=torch.long)
    labels = torch.full((len(sequences), width), IGNORE_INDEX, dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, (prompt, response) in enumerate(sequences):
        ids = torch.tensor(prompt + response, dtype=torch.long)
        input_ids[row, : len(ids)] = ids
        labels[row, len(prompt) : len(ids)] = ids[len(prompt) :]
        attention_mask[row, : len(ids)] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
