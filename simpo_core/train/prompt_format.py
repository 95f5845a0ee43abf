"""How a chat prompt becomes token ids: one function for training, evaluation and serving.

This file imports nothing outside the standard library: the served model carries a copy of
it (MLflow `code_paths`), so a policy answers a prompt exactly as it saw prompts in training.
The served model's generation defaults live here too, read by the model and its signature.

A prompt longer than its budget is shortened turn by turn (`fit_prompt_ids`): the system turn
and the latest turn stay, the oldest exchanges go first.
"""

import logging
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

# Generation params of the served model (its MLflow signature's defaults): greedy, bounded.
SERVING_DEFAULTS = {"max_new_tokens": 64, "temperature": 1.0, "top_p": 1.0, "do_sample": False}

# What a transformers tokenizer logs (once) when a text has more tokens than the model takes.
LENGTH_WARNING = "Token indices sequence length is longer than the specified maximum sequence length"
_TOKENIZER_LOGGER = "transformers.tokenization_utils_base"


class _DropLengthWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(LENGTH_WARNING)


_LENGTH_FILTER = _DropLengthWarning()
_QUIET_LOCK = threading.Lock()
_quiet_depth = 0


@contextmanager
def quiet_length_warning() -> Iterator[None]:
    """Drop the tokenizer's "sequence length is longer than the specified maximum" warning
    inside the block: the code here measures long texts on purpose and truncates them after,
    so the warning would only alarm. Nested and concurrent blocks are fine."""
    global _quiet_depth
    logger = logging.getLogger(_TOKENIZER_LOGGER)
    with _QUIET_LOCK:
        _quiet_depth += 1
        logger.addFilter(_LENGTH_FILTER)  # adding it twice keeps one
    try:
        yield
    finally:
        with _QUIET_LOCK:
            _quiet_depth -= 1
            if _quiet_depth == 0:
                logger.removeFilter(_LENGTH_FILTER)


def render_prompt_text(tokenizer: Any, messages: Sequence[Mapping[str, str]]) -> str:
    """The prompt text the model is fed before its answer: the chat template with a generation
    prompt, or, without a template, `role: content` lines and the cue `assistant: `."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)
    return "".join(f"{m['role']}: {m['content']}\n" for m in messages) + "assistant: "


def render_prompt_ids(tokenizer: Any, messages: Sequence[Mapping[str, str]]) -> list[int]:
    """Prompt token ids: the chat template with a generation prompt, BOS exactly once.

    Without a chat template the turns are joined as `role: content` lines and the reply is
    cued with `assistant:`.

    Args:
        tokenizer: a transformers tokenizer.
        messages: chat turns `{"role", "content"}`, system and multi-turn allowed.
    """
    with quiet_length_warning():  # a long prompt is measured on purpose, then truncated
        ids = list(tokenizer(render_prompt_text(tokenizer, messages), add_special_tokens=False)["input_ids"])
    bos = tokenizer.bos_token_id
    if bos is not None:
        while ids and ids[0] == bos:  # a template may render its own BOS; keep one
            ids.pop(0)
        ids.insert(0, bos)
    return ids


def keep_last_tokens(ids: list[int], max_prompt_length: int, bos_token_id: int | None) -> list[int]:
    """The last `max_prompt_length` prompt tokens (a leading BOS stays, as in training)."""
    if len(ids) <= max_prompt_length:
        return ids
    if bos_token_id is not None and ids[0] == bos_token_id and max_prompt_length > 1:
        return ids[:1] + ids[len(ids) - max_prompt_length + 1 :]
    return ids[-max_prompt_length:]


def fit_prompt_ids(tokenizer: Any, messages: Sequence[Mapping[str, str]], max_prompt_length: int) -> list[int]:
    """Prompt token ids (`render_prompt_ids`) shortened to at most `max_prompt_length` tokens.

    A prompt that fits is returned whole. A longer one loses, in this order, only as much as
    it must:

    1. the oldest earlier exchanges, whole turns (a user turn and the turns after it up to
       the next user turn), so the conversation still alternates; the system turn (a first
       turn with role `system`) and the latest turn stay;
    2. then text from the start of the latest turn (its end, what the model answers, stays);
    3. only when not one character of the latest turn fits beside the system turn: the last
       `max_prompt_length` tokens of the system and latest turns rendered (`keep_last_tokens`),
       which cuts the system turn from its start.

    Args:
        tokenizer: a transformers tokenizer.
        messages: chat turns `{"role", "content"}`.
        max_prompt_length: the token budget, >= 1.

    Returns:
        Token ids, BOS once when the tokenizer has one, at most `max_prompt_length` of them.
    """
    messages = [dict(message) for message in messages]
    ids = render_prompt_ids(tokenizer, messages)
    if len(ids) <= max_prompt_length or not messages:
        return keep_last_tokens(ids, max_prompt_length, tokenizer.bos_token_id)
    head = messages[:1] if len(messages) > 1 and messages[0].get("role") == "system" else []
    history, latest = messages[len(head) : -1], messages[-1]
    without_history = render_prompt_ids(tokenizer, [*head, latest])
    if len(without_history) <= max_prompt_length:
        return _drop_oldest_exchanges(tokenizer, head, history, latest, without_history, max_prompt_length)
    cut = _cut_latest_turn(tokenizer, head, latest, max_prompt_length)
    return cut if cut is not None else keep_last_tokens(without_history, max_prompt_length, tokenizer.bos_token_id)


def _drop_oldest_exchanges(
    tokenizer: Any, head: list[dict], history: list[dict], latest: dict, fitting: list[int], budget: int
) -> list[int]:
    """The ids with the fewest oldest exchanges dropped that fit `budget`; `fitting` is the
    rendering without any history, known to fit. Binary search: a prompt of many long turns
    is rendered a few times, not once per turn."""
    starts = [i for i in range(1, len(history)) if history[i].get("role") == "user"] + [len(history)]
    low, high, best = 0, len(starts) - 1, fitting  # `best` is the rendering from starts[high]
    while low < high:
        middle = (low + high) // 2
        ids = render_prompt_ids(tokenizer, [*head, *history[starts[middle] :], latest])
        if len(ids) <= budget:
            high, best = middle, ids
        else:
            low = middle + 1
    return best


def _cut_latest_turn(tokenizer: Any, head: list[dict], latest: dict, budget: int) -> list[int] | None:
    """The ids with the latest turn reduced to its longest end (in characters) that fits
    `budget`; None when not one character fits. The end grows from about a character per
    token and doubles, so a huge turn is never rendered whole."""
    text = str(latest.get("content", ""))

    def render(characters: int) -> list[int]:
        return render_prompt_ids(tokenizer, [*head, {**latest, "content": text[len(text) - characters :]}])

    low, high, best = 0, len(text), None  # `low` characters fit (`best`; none yet when 0), `high` do not
    probe = min(budget, high - 1)
    while probe > low:
        ids = render(probe)
        if len(ids) > budget:
            high = probe
            break
        low, best = probe, ids
        probe = min(2 * probe, high - 1)
    while high - low > 1:
        middle = (low + high) // 2
        ids = render(middle)
        if len(ids) <= budget:
            low, best = middle, ids
        else:
            high = middle
    return best
