"""The canonical preference row, shared by loading, validation, training and evaluation.

One row per pair:
    prompt:   list of chat messages `{"role", "content"}` (system turn allowed, multi-turn
              allowed, the last turn is the user's)
    chosen:   the preferred assistant reply (string)
    rejected: the dispreferred assistant reply (string)

The flat layout (`prompt` a string) is accepted everywhere a canonical row is, and read as a
single user turn.
"""

from collections.abc import Iterable, Mapping
from typing import Any, TypedDict

CANONICAL_COLUMNS = ("prompt", "chosen", "rejected")
ROLES = ("system", "user", "assistant")


class Message(TypedDict):
    role: str
    content: str


class CanonicalPair(TypedDict):
    prompt: list[Message]
    chosen: str
    rejected: str


def prompt_to_messages(prompt: Any) -> list[Message]:
    """Return the prompt as a list of `{"role", "content"}` messages.

    Accepts a string (one user turn) or any sequence of mappings with `role` and
    `content`, including the numpy arrays of dicts that Parquet round-trips produce.

    Raises:
        TypeError: the prompt is neither a string nor a sequence of messages.
    """
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    if isinstance(prompt, Mapping) or not isinstance(prompt, Iterable) and not hasattr(prompt, "tolist"):
        raise TypeError(f"prompt must be a string or a list of messages, got {type(prompt).__name__}")
    items = prompt.tolist() if hasattr(prompt, "tolist") else list(prompt)
    messages: list[Message] = []
    for index, item in enumerate(items):
        if not isinstance(item, Mapping) or "role" not in item or "content" not in item:
            raise TypeError(f"prompt message {index} must be a mapping with 'role' and 'content', got {item!r:.80}")
        messages.append({"role": str(item["role"]), "content": str(item["content"])})
    return messages


def to_canonical(row: Mapping[str, Any]) -> CanonicalPair:
    """A canonical pair from a canonical or flat row (other keys are dropped)."""
    return {
        "prompt": prompt_to_messages(row["prompt"]),
        "chosen": str(row["chosen"]),
        "rejected": str(row["rejected"]),
    }
