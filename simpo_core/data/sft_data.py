"""SFT data: prompt/response rows for the supervised stage that SimPO starts from.

SimPO is applied to SFT models: supervised fine-tuning teaches a model to answer in the
expected form, and the preference pairs then teach it which answers are better. Two
sources of rows:

- `generate_format_rows(n, seed)`: the embedded default's SFT data. The synthetic prompts
  (same templates and categories as `synthetic.generate_pairs`), each answered with a list
  of distinct words of a *random* category, in the synthetic answers' form (capitalised,
  comma-separated, a final period; as many words as a "Give me N" prompt asks for). A model
  trained on it learns the format and nothing about which category is right: that is the
  preference the pairs teach, so an SFT'd model still sits near chance on them.
- `sft_rows_from(records)`: rows of a user's file, in the prompt/response or
  prompt/completion layout, a preference layout (the chosen answer is the target), or
  chat `messages` ending with the assistant's answer.

A row is `{"prompt": [messages], "response": str}`; the prompt renders through the chat
template exactly as in SimPO training and serving (`train.prompt_format`).
"""

import random
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypedDict

from simpo_core.data.schema import Message, prompt_to_messages
from simpo_core.data.synthetic import CATEGORIES, MAX_WORDS, MIN_WORDS, PROMPT_TEMPLATES, PURPOSES
from simpo_core.errors import DataError

RESPONSE_KEYS = ("response", "completion", "chosen")  # the target answer, in order of preference


class SFTRow(TypedDict):
    prompt: list[Message]
    response: str


def generate_format_rows(n: int, seed: int = 0) -> list[SFTRow]:
    """`n` synthetic prompts answered in the right format with a random category's words.

    The answer's category is drawn independently of the prompt's (it matches in 1 row of
    8 on average), so the rows carry no preference signal.

    Raises:
        ValueError: `n` is negative.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    rng = random.Random(seed)
    categories = sorted(CATEGORIES)
    rows: list[SFTRow] = []
    for _ in range(n):
        asked, answered = rng.choice(categories), rng.choice(categories)
        count = rng.randint(MIN_WORDS, MAX_WORDS)
        template = rng.choice(PROMPT_TEMPLATES)
        prompt = template.format(category=asked, purpose=rng.choice(PURPOSES), count=count)
        words = rng.sample(CATEGORIES[answered], count)  # distinct words: a list, not a loop
        rows.append({"prompt": prompt_to_messages(prompt), "response": ", ".join(words).capitalize() + "."})
    return rows


def sft_rows_from(records: Iterable[Mapping[str, Any]]) -> list[SFTRow]:
    """Prompt/response rows from records in any supported SFT or preference layout.

    Accepted per record: `prompt` with `response`, `completion` or `chosen` (a preference
    pair's chosen answer; `rejected` is ignored), each a string or a messages list whose
    last turn is the assistant's; or `messages` alone, whose last turn is the assistant's
    answer and the turns before it the prompt.

    Raises:
        DataError: a record has none of these layouts, or an empty prompt or answer; the
            message names the record index.
    """
    rows: list[SFTRow] = []
    for index, record in enumerate(records):
        if not isinstance(record, Mapping):
            raise DataError(f"SFT record {index}: expected a mapping, got {type(record).__name__}")
        prompt, response = _prompt_and_response(record, index)
        if not prompt or not response.strip():
            raise DataError(f"SFT record {index}: the prompt or the answer is empty; give both some text")
        rows.append({"prompt": prompt, "response": response})
    return rows


def read_sft_file(path: str | Path) -> tuple[list[SFTRow], str]:
    """SFT rows of a local JSONL, JSON, Parquet or CSV file (see `sft_rows_from`) and its SHA-256.

    Raises:
        DataError: the file is missing, of an unsupported type, has a record that cannot be
            parsed (the line is named), or a record in no accepted layout.
    """
    import hashlib

    from simpo_core.data.readers import UNPARSED, read_file

    path = Path(path)
    if not path.is_file():
        raise DataError(f"SFT data file {path} does not exist; pass a JSONL, JSON, Parquet or CSV file")
    hasher = hashlib.sha256()
    records = []
    for raw in read_file(path, hasher):
        if raw.value is UNPARSED:
            raise DataError(f"{path}, record {raw.source_row}: {raw.reason}; fix or remove it")
        records.append(raw.value)
    return sft_rows_from(records), hasher.hexdigest()


def _prompt_and_response(record: Mapping[str, Any], index: int) -> tuple[list[Message], str]:
    if "prompt" not in record and "messages" in record:
        return _messages_split(record["messages"], index)
    key = next((key for key in RESPONSE_KEYS if key in record), None)
    if "prompt" not in record or key is None:
        raise DataError(
            f"SFT record {index} has keys {sorted(record)}; give 'prompt' with one of {list(RESPONSE_KEYS)} "
            "(a preference file's chosen answers are used), or 'messages' ending with the assistant's turn"
        )
    try:
        prompt = prompt_to_messages(record["prompt"])
    except TypeError as error:
        raise DataError(f"SFT record {index}: {error}") from None
    return prompt, _answer_text(record[key], key, index)


def _answer_text(value: Any, key: str, index: int) -> str:
    """A string answer, or the content of the last turn of a messages list."""
    if isinstance(value, str):
        return value
    return _messages_split(value, index, key)[1]


def _messages_split(value: Any, index: int, key: str = "messages") -> tuple[list[Message], str]:
    """`(turns before the last, last turn's content)` of a messages list ending with the assistant."""
    try:
        turns = [] if isinstance(value, str) else prompt_to_messages(value)
    except TypeError:
        turns = []
    if not turns or turns[-1]["role"] != "assistant":
        kinds = "a messages list" if key == "messages" else "a string or a messages list"
        raise DataError(f"SFT record {index}: '{key}' must be {kinds} ending with the assistant's turn")
    return turns[:-1], turns[-1]["content"]
