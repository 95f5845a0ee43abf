"""How many pairs the training limits would cut, counted as the trainer counts tokens.

The trainer (`simpo_core.train.tokenization.encode_pair`) renders the prompt with the chat
template and BOS once (`prompt_format.render_prompt_ids`) and ends each answer with EOS once
(`response_ids`). When prompt + longer answer exceed `max_length`, a prompt longer than
`max_prompt_length` is shortened to at most that many tokens, then each answer keeps what
fits beside the prompt. Counted per pair:

- `prompt`: the trainer shortens the prompt;
- `chosen`, `rejected`: that answer does not fit beside the prompt as kept (a shortened
  prompt is shortened here too, with the trainer's `fit_prompt_ids`: dropping whole turns
  may keep fewer than `max_prompt_length` tokens and leave room for the answer);
- `pairs`: any of the three; `fraction`: `pairs` over all pairs.

Only token counts are kept per chunk of rows, so memory stays bounded.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from simpo_core.audit.settings import AuditSettings
from simpo_core.data.schema import prompt_to_messages
from simpo_core.data.tokens import count_tokens
from simpo_core.train.prompt_format import fit_prompt_ids, quiet_length_warning, render_prompt_text


@dataclass(frozen=True)
class TruncationLimits:
    """The training limits: prompt + answer tokens, and prompt tokens (less than `max_length`)."""

    max_length: int
    max_prompt_length: int


def limits_of(settings: AuditSettings) -> TruncationLimits:
    """The limits the audit checks: the settings' own, or `SimPOConfig`'s defaults where unset."""
    from simpo_core.train.config import SimPOConfig

    fields = SimPOConfig.model_fields
    return TruncationLimits(
        settings.max_length if settings.max_length is not None else fields["max_length"].default,
        settings.max_prompt_length if settings.max_prompt_length is not None else fields["max_prompt_length"].default,
    )


def prompt_token_counts(prompts: Iterable[Any], tokenizer: Any) -> np.ndarray:
    """Tokens of each prompt as training feeds it: the same rendering as `render_prompt_ids`
    (chat template with a generation prompt; BOS exactly once when the tokenizer has one).

    Args:
        prompts: N prompts, each a string or a list of `{"role", "content"}` messages.
        tokenizer: the model's tokenizer.

    Returns:
        int64 array `(N,)`.
    """
    texts = pd.Series([render_prompt_text(tokenizer, prompt_to_messages(p)) for p in prompts], dtype=object)
    counts = count_tokens(texts, tokenizer)
    bos, bos_text = tokenizer.bos_token_id, getattr(tokenizer, "bos_token", None)
    if bos is not None:
        # render_prompt_ids drops the BOS tokens a template writes and puts exactly one first.
        counts = counts + 1 - np.array([_leading(text, bos_text) for text in texts], dtype=np.int64)
    return counts


def answer_token_counts(answers: pd.Series, tokenizer: Any, counts: np.ndarray | None = None) -> np.ndarray:
    """Tokens of each answer as training feeds it (`response_ids`: EOS exactly once).

    Args:
        answers: N answer texts.
        tokenizer: the model's tokenizer.
        counts: `count_tokens(answers, tokenizer)` when already measured (not measured again).

    Returns:
        int64 array `(N,)`.
    """
    counts = count_tokens(answers, tokenizer) if counts is None else counts
    eos, eos_text = tokenizer.eos_token_id, getattr(tokenizer, "eos_token", None)
    if eos is None:
        return counts
    counts = counts + 1
    if eos_text:
        # An answer that already ends with EOS keeps one: such (rare) rows are counted one by one.
        texts = answers.astype(str)
        ends = np.flatnonzero(texts.str.rstrip().str.endswith(eos_text).to_numpy(dtype=bool))
        counts[ends] = [_answer_length(tokenizer, texts.iloc[i], eos) for i in ends]
    return counts


def measure_pairs(
    frame: pd.DataFrame, tokenizer: Any, limits: TruncationLimits
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The audit's measures of N pairs (`prompt`, `chosen`, `rejected` columns).

    Returns:
        `(chosen, rejected, flags)`: response tokens without special tokens `(N,)` int64 each
        (the length figures), and `truncation_flags` `(N, 3)` bool.
    """
    chosen = count_tokens(frame["chosen"], tokenizer)
    rejected = count_tokens(frame["rejected"], tokenizer)
    prompt = prompt_token_counts(frame["prompt"], tokenizer)
    answers = (
        answer_token_counts(frame["chosen"], tokenizer, chosen),
        answer_token_counts(frame["rejected"], tokenizer, rejected),
    )
    kept = prompt.copy()
    # The few prompts training shortens are shortened as training does, for the room they leave.
    for i in np.flatnonzero(truncation_flags(prompt, *answers, limits)[:, 0]):
        messages = prompt_to_messages(frame["prompt"].iloc[i])
        kept[i] = len(fit_prompt_ids(tokenizer, messages, limits.max_prompt_length))
    return chosen, rejected, truncation_flags(prompt, *answers, limits, kept)


def truncation_flags(
    prompt: np.ndarray,
    chosen: np.ndarray,
    rejected: np.ndarray,
    limits: TruncationLimits,
    kept: np.ndarray | None = None,
) -> np.ndarray:
    """Which parts of each pair training cuts: `(N, 3)` bool, columns prompt, chosen, rejected.

    Args:
        prompt, chosen, rejected: `(N,)` token counts (`prompt_token_counts`, `answer_token_counts`).
        limits: the training limits.
        kept: `(N,)` prompt tokens left where training shortens the prompt (`fit_prompt_ids`);
            None counts a shortened prompt at `max_prompt_length` tokens, its most.
    """
    too_long = prompt + np.maximum(chosen, rejected) > limits.max_length
    prompt_cut = too_long & (prompt > limits.max_prompt_length)
    kept = np.where(prompt_cut, limits.max_prompt_length if kept is None else kept, prompt)
    return np.stack([prompt_cut, kept + chosen > limits.max_length, kept + rejected > limits.max_length], axis=1)


def truncation_report(flags: np.ndarray, limits: TruncationLimits, max_fraction: float) -> dict[str, Any]:
    """The `truncated` block of the audit report from `(N, 3)` flags: counts per part, pairs
    with any cut, their share, the limits and whether the share is above `max_fraction`."""
    pairs = len(flags)
    cut = int(flags.any(axis=1).sum()) if pairs else 0
    fraction = cut / pairs if pairs else 0.0
    return {
        "prompt": int(flags[:, 0].sum()) if pairs else 0,
        "chosen": int(flags[:, 1].sum()) if pairs else 0,
        "rejected": int(flags[:, 2].sum()) if pairs else 0,
        "pairs": cut,
        "fraction": fraction,
        "max_length": limits.max_length,
        "max_prompt_length": limits.max_prompt_length,
        "max_truncated_fraction": max_fraction,
        "flagged": fraction > max_fraction,
    }


def truncation_figures(block: dict[str, Any]) -> str:
    """One sentence of the counts and limits, for a log line or an error."""
    return (
        f"training would cut {block['pairs']} pairs ({block['fraction']:.1%}, above "
        f"{block['max_truncated_fraction']:.1%}): {block['prompt']} prompts longer than max_prompt_length "
        f"{block['max_prompt_length']}, {block['chosen']} chosen and {block['rejected']} rejected answers "
        f"past max_length {block['max_length']} (prompt + answer tokens)"
    )


TRUNCATION_FIX = (
    "raise train.max_length / train.max_prompt_length, quarantine long rows with data.max_prompt_tokens / "
    "data.max_response_tokens, or raise audit.max_truncated_fraction"
)


def _answer_length(tokenizer: Any, text: str, eos: int) -> int:
    """`len(response_ids(tokenizer, text))`: its trailing EOS tokens dropped, one EOS added."""
    with quiet_length_warning():
        ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    while ids and ids[-1] == eos:
        ids.pop()
    return len(ids) + 1


def _leading(text: str, piece: str | None) -> int:
    """How many times `text` starts with `piece`, back to back."""
    if not piece:
        return 0
    count = 0
    while text.startswith(piece, count * len(piece)):
        count += 1
    return count
