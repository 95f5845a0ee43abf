"""How a chat prompt becomes token ids: one function for training, evaluation and serving.

This file imports nothing outside the standard library: the served model carries a copy of
it (MLflow `code_paths`), so a policy answers a prompt exactly as it saw prompts in training.
The served model's generation defaults live here too, read by the model and its signature.
"""

from collections.abc import Mapping, Sequence
from typing import Any

# Generation params of the served model (its MLflow signature's defaults): greedy, bounded.
SERVING_DEFAULTS = {"max_new_tokens": 64, "temperature": 1.0, "top_p": 1.0, "do_sample": False}


def render_prompt_ids(tokenizer: Any, messages: Sequence[Mapping[str, str]]) -> list[int]:
    """Prompt token ids: the chat template with a generation prompt, BOS exactly once.

    Without a chat template the turns are joined as `role: content` lines and the reply is
    cued with `assistant:`.

    Args:
        tokenizer: a transformers tokenizer.
        messages: chat turns `{"role", "content"}`, system and multi-turn allowed.
    """
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)
    else:
        text = "".join(f"{m['role']}: {m['content']}\n" for m in messages) + "assistant: "
    ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
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
