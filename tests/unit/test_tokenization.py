import re

import numpy as np
import pandas as pd
import pytest
import torch

from simpo_core.errors import DataError
from simpo_core.tiny_model import build_tiny_tokenizer
from simpo_core.train.tokenization import (
    EncodedPair,
    collate_pairs,
    encode_pair,
    encode_pairs,
    render_prompt_ids,
    response_ids,
    rows_from,
    truncate_pair,
)


class LetterTokenizer:
    """pad 0, BOS 1 (`<s>`), EOS 2 (`</s>`), then 'a' → 3, 'b' → 4, ... ':' → 29.

    Its chat template renders `<s>` + the contents + `:` (it writes its own BOS)."""

    chat_template = "letters"
    pad_token_id, bos_token_id, eos_token_id = 0, 1, 2

    def __init__(self, with_template=True, with_eos=True):
        if not with_template:
            self.chat_template = None
        if not with_eos:
            self.eos_token_id = None

    def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=True):
        return "<s>" + "".join(m["content"] for m in messages) + ":"

    def __call__(self, text, add_special_tokens=True):
        pieces = re.findall(r"</s>|<s>|.", text)
        table = {"<s>": 1, "</s>": 2, ":": 29}
        return {
            "input_ids": [
                table[p] if p in table else ord(p) - ord("a") + 3 for p in pieces if p in table or p.isalpha()
            ]
        }


def test_tiny_pair_uses_the_chat_template_and_one_eos():
    tokenizer = build_tiny_tokenizer()
    pair = encode_pair(tokenizer, {"prompt": "hi", "chosen": "ok", "rejected": "no"}, 64, 32)

    def as_bytes(text):
        return [b + 3 for b in text.encode()]  # ByT5: id = byte + 3

    assert pair.prompt_ids == as_bytes("<|user|>\nhi\n<|assistant|>\n")  # no BOS: the tokenizer has none
    assert pair.chosen_ids == as_bytes("ok") + [1] and pair.rejected_ids == as_bytes("no") + [1]


def test_bos_exactly_once_even_when_the_template_writes_it():
    """The template renders `<s>ab:`; the ids are [BOS, a, b, :] = [1, 3, 4, 29]."""
    assert render_prompt_ids(LetterTokenizer(), [{"role": "user", "content": "ab"}]) == [1, 3, 4, 29]


def test_bos_added_without_a_template():
    """No template: 'user: ab\\nassistant: ' keeps the letters and ':' → [BOS] u s e r : a b a s s i s t a n t :."""
    ids = render_prompt_ids(LetterTokenizer(with_template=False), [{"role": "user", "content": "ab"}])
    assert ids[0] == 1 and ids.count(1) == 1 and ids[-1] == 29


def test_eos_exactly_once_even_when_the_text_ends_with_it():
    assert response_ids(LetterTokenizer(), "ab</s>") == [3, 4, 2]
    assert response_ids(LetterTokenizer(), "ab") == [3, 4, 2]


def test_pair_that_fits_is_not_truncated():
    """Prompt 5 > max_prompt_length 3, but 5 + 3 <= 8 = max_length: nothing is cut."""
    assert truncate_pair([1, 10, 11, 12, 13], [20, 21, 22], [30], 8, 3, keep_first=True) == (
        [1, 10, 11, 12, 13],
        [20, 21, 22],
        [30],
    )


def test_prompt_keeps_its_end_and_bos_then_responses_fit():
    """5 + 3 > 6: the prompt keeps BOS + its last 2 tokens (3 in all) → [1, 12, 13]; room 3.
    With max_length 5 the room is 2, so the chosen response loses its last token."""
    assert truncate_pair([1, 10, 11, 12, 13], [20, 21, 22], [30], 6, 3, keep_first=True) == (
        [1, 12, 13],
        [20, 21, 22],
        [30],
    )
    assert truncate_pair([1, 10, 11, 12, 13], [20, 21, 22], [30], 5, 3, keep_first=True) == (
        [1, 12, 13],
        [20, 21],
        [30],
    )
    assert truncate_pair([10, 11, 12, 13], [20, 21, 22], [30], 5, 3) == ([11, 12, 13], [20, 21], [30])


def test_both_responses_share_the_truncated_prompt():
    pair = encode_pair(LetterTokenizer(), {"prompt": "abcdefgh", "chosen": "xyz", "rejected": "q"}, 8, 4)
    assert pair.prompt_ids == [1, 9, 10, 29]  # BOS + 'g' 'h' ':'
    assert pair.chosen_ids == [26, 27, 28, 2] and pair.rejected_ids == [19, 2]


def test_empty_response_names_the_row():
    rows = [{"prompt": "ab", "chosen": "c", "rejected": "d"}, {"prompt": "ab", "chosen": "c", "rejected": ""}]
    with pytest.raises(DataError, match="row 1: the rejected response is empty"):
        encode_pairs(LetterTokenizer(with_eos=False), rows, 16, 8)


def test_no_room_left_for_the_response_names_the_row():
    """max_prompt_length == max_length (the config refuses this; the function explains it)."""
    rows = [{"prompt": "abcdef", "chosen": "c", "rejected": "d"}]
    with pytest.raises(DataError, match="row 0: the chosen response is empty after truncation"):
        encode_pairs(LetterTokenizer(), rows, 4, 4)


def test_non_pair_row_names_the_row():
    with pytest.raises(DataError, match="row 0: not a preference pair"):
        encode_pairs(LetterTokenizer(), [{"prompt": "ab", "chosen": "c"}], 16, 8)


def test_a_missing_response_read_from_a_table_is_refused_not_trained_as_nan():
    rows = [{"prompt": "ab", "chosen": "c", "rejected": "d"}, {"prompt": "ab", "chosen": "c", "rejected": float("nan")}]
    with pytest.raises(DataError, match="row 1: rejected must be text, got nan"):
        encode_pairs(LetterTokenizer(), rows, 16, 8)


def test_collate_chosen_first_then_rejected_right_padded():
    pairs = [EncodedPair([1, 5], [6, 2], [7, 8, 2]), EncodedPair([1], [9, 2], [2])]
    batch = collate_pairs(pairs, pad_token_id=0)
    torch.testing.assert_close(
        batch["input_ids"],
        torch.tensor(
            [
                [1, 5, 6, 2, 0],  # pair 0 chosen
                [1, 9, 2, 0, 0],  # pair 1 chosen
                [1, 5, 7, 8, 2],  # pair 0 rejected
                [1, 2, 0, 0, 0],  # pair 1 rejected
            ]
        ),
    )
    torch.testing.assert_close(
        batch["labels"],
        torch.tensor(
            [
                [-100, -100, 6, 2, -100],
                [-100, 9, 2, -100, -100],
                [-100, -100, 7, 8, 2],
                [-100, 2, -100, -100, -100],
            ]
        ),
    )
    torch.testing.assert_close(
        batch["attention_mask"], torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 1, 0, 0, 0]])
    )


def test_rows_from_a_parquet_style_frame_with_message_arrays():
    frame = pd.DataFrame(
        {
            "prompt": [
                np.array([{"role": "system", "content": "be brief"}, {"role": "user", "content": "ab"}], dtype=object)
            ],
            "chosen": ["c"],
            "rejected": ["d"],
            "prompt_hash": ["x"],
        }
    )
    pair = encode_pairs(LetterTokenizer(), rows_from(frame), 16, 8)[0]
    assert pair.prompt_ids == [1] + [4, 7, 4, 20, 11, 7, 8] + [3, 4, 29]  # "bebrief" + "ab" + ":"


def test_rows_from_a_datasets_dataset():
    from datasets import Dataset

    rows = rows_from(Dataset.from_list([{"prompt": "ab", "chosen": "c", "rejected": "d"}]))
    assert encode_pairs(LetterTokenizer(), rows, 16, 8)[0].chosen_ids == [5, 2]


def tiny_text(tokenizer, ids):
    return tokenizer.decode(ids)


def conversation(turns, system="Be terse.", latest="What now?"):
    """A system turn, `turns` earlier exchanges (oldest first) and the latest user turn."""
    messages = [{"role": "system", "content": system}]
    for i in range(turns):
        messages += [
            {"role": "user", "content": f"question {i} " + "q" * 40},
            {"role": "assistant", "content": f"answer {i} " + "a" * 40},
        ]
    return messages + [{"role": "user", "content": latest}]


def test_a_long_history_loses_its_oldest_exchanges_and_keeps_the_system_and_latest_turns():
    tokenizer = build_tiny_tokenizer()  # byte-level, no BOS: one token per ASCII character
    messages = conversation(6)
    full = render_prompt_ids(tokenizer, messages)
    room_for_two = len(render_prompt_ids(tokenizer, messages[:1] + messages[-5:]))  # system + 2 exchanges + latest
    row = {"prompt": messages, "chosen": "fine", "rejected": "no"}
    pair = encode_pair(tokenizer, row, max_length=room_for_two + 10, max_prompt_length=room_for_two)
    text = tiny_text(tokenizer, pair.prompt_ids)
    assert len(full) > room_for_two and len(pair.prompt_ids) == room_for_two
    assert text.startswith("<|system|>\nBe terse.\n")  # the system turn, whole
    assert text.endswith("<|user|>\nWhat now?\n<|assistant|>\n")  # the latest turn, whole
    assert "question 4" in text and "answer 5" in text  # the two newest exchanges stay
    assert "question 0" not in text and "answer 3" not in text  # the oldest went first, whole turns
    assert pair.chosen_ids == list(tokenizer("fine", add_special_tokens=False)["input_ids"]) + [1]


def test_a_too_long_latest_turn_loses_its_start_and_the_system_turn_stays():
    tokenizer = build_tiny_tokenizer()
    messages = conversation(2, latest="x" * 300 + " the actual question?")
    pair = encode_pair(tokenizer, {"prompt": messages, "chosen": "ok", "rejected": "no"}, 120, 100)
    text = tiny_text(tokenizer, pair.prompt_ids)
    assert len(pair.prompt_ids) == 100
    assert text.startswith("<|system|>\nBe terse.\n<|user|>\n")  # every earlier exchange went first
    assert text.endswith("x the actual question?\n<|assistant|>\n")


def test_the_system_turn_is_cut_only_when_nothing_else_fits():
    tokenizer = build_tiny_tokenizer()
    messages = conversation(1, system="s" * 200 + " rules end.", latest="Why?")
    pair = encode_pair(tokenizer, {"prompt": messages, "chosen": "ok", "rejected": "no"}, 80, 60)
    text = tiny_text(tokenizer, pair.prompt_ids)
    assert len(pair.prompt_ids) == 60
    assert text.endswith("s rules end.\n<|user|>\nWhy?\n<|assistant|>\n") and "question 0" not in text


def test_a_prompt_that_fits_beside_its_answers_is_kept_whole():
    tokenizer = build_tiny_tokenizer()
    messages = conversation(3)
    full = render_prompt_ids(tokenizer, messages)
    pair = encode_pair(tokenizer, {"prompt": messages, "chosen": "ok", "rejected": "no"}, len(full) + 3, 10)
    assert pair.prompt_ids == full


def test_measuring_a_long_answer_logs_no_sequence_length_warning():
    import logging

    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger("transformers.tokenization_utils_base")
    logger.addHandler(handler)
    try:
        long_answer = "word " * 600  # 3,000 tokens > the tiny tokenizer's model_max_length 1,024
        encode_pair(build_tiny_tokenizer(), {"prompt": "hi", "chosen": long_answer, "rejected": "no"}, 256, 128)
        quiet = [r.getMessage() for r in records]
        build_tiny_tokenizer()(long_answer, add_special_tokens=False)  # measured without the guard: it warns
        unguarded = [r.getMessage() for r in records[len(quiet) :]]
    finally:
        logger.removeHandler(handler)
    assert not any("Token indices sequence length" in message for message in quiet)
    assert any("Token indices sequence length" in message for message in unguarded)
