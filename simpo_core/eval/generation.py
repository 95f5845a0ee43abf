"""Generation check: does the model still write sensible answers, or has it collapsed?

Preference metrics can improve while the model degenerates into repetition ("Hi Hi Hi") or
empty answers. This module generates answers to a sample of held-out prompts (greedy and
sampled, bounded `max_new_tokens`) and measures length, repetition and emptiness.

Repetition of one answer is the share of its n-grams that already appeared earlier in it,
the larger of word trigrams and character 8-grams: words catch "cat, cat, cat", characters
catch loops without spaces ("aaaa…") that a word count misses. Well-formed list answers of
the synthetic data score about 0.1 on average; loops score above 0.7.
"""

import logging
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from simpo_core.data.schema import Message

logger = logging.getLogger(__name__)

WORD_NGRAM = 3
CHAR_NGRAM = 8
REPETITION_THRESHOLD = 0.5  # mean repetition rate above this flags `collapsed`
EMPTY_THRESHOLD = 0.5  # share of empty answers above this flags `collapsed`
_WORDS = re.compile(r"\w+|[^\w\s]")


@dataclass(frozen=True)
class Generation:
    """One generated answer: its text and its number of new tokens (eos and padding excluded)."""

    text: str
    num_tokens: int


class Generator(Protocol):
    """Anything that answers chat prompts; `generate_responses` is the real one."""

    def __call__(
        self, model: Any, tokenizer: Any, prompts: list[list[Message]], *, do_sample: bool, seed: int, **kwargs: Any
    ) -> list[Generation]: ...


def ngram_repetition(units: Sequence[Any], n: int) -> float:
    """Share of the n-grams of `units` that repeat an earlier one; 0 when there are none."""
    ngrams = [tuple(units[i : i + n]) for i in range(len(units) - n + 1)]
    if not ngrams:
        return 0.0
    return 1.0 - len(set(ngrams)) / len(ngrams)


def repetition_rate(text: str) -> float:
    """Repetition of one answer in [0, 1): max of word-trigram and character-8-gram repetition."""
    lowered = text.lower()
    return max(ngram_repetition(_WORDS.findall(lowered), WORD_NGRAM), ngram_repetition(lowered, CHAR_NGRAM))


def generation_metrics(
    generations: Sequence[Generation],
    *,
    repetition_threshold: float = REPETITION_THRESHOLD,
    empty_threshold: float = EMPTY_THRESHOLD,
) -> dict[str, Any]:
    """Summary of a set of answers.

    Returns:
        `samples`, `mean_length` (new tokens), `mean_chars`, `repetition_rate` (mean over
        answers), `empty_rate` (answers blank after stripping), `distinct_rate` (unique
        answers / answers; low when every prompt gets the same reply), `collapsed` and
        `collapse_reasons` (why it was flagged; empty when it was not).
    """
    if not generations:
        raise ValueError("need at least one generated answer; raise generation_samples above 0")
    count = len(generations)
    repetition = sum(repetition_rate(g.text) for g in generations) / count
    empty = sum(not g.text.strip() for g in generations) / count
    reasons = []
    if repetition > repetition_threshold:
        reasons.append(f"repetition rate {repetition:.2f} > {repetition_threshold}")
    if empty > empty_threshold:
        reasons.append(f"empty-answer rate {empty:.2f} > {empty_threshold}")
    return {
        "samples": count,
        "mean_length": sum(g.num_tokens for g in generations) / count,
        "mean_chars": sum(len(g.text) for g in generations) / count,
        "repetition_rate": repetition,
        "empty_rate": empty,
        "distinct_rate": len({g.text.strip() for g in generations}) / count,
        "collapsed": bool(reasons),
        "collapse_reasons": reasons,
    }


def generation_block(greedy: Sequence[Generation], sampled: Sequence[Generation]) -> dict[str, Any]:
    """The `generation` block: totals over greedy and sampled answers, and each mode alone.

    `collapsed` is true when either mode (or both together) collapsed.
    """
    block = generation_metrics([*greedy, *sampled])
    by_mode = {"greedy": generation_metrics(greedy), "sampled": generation_metrics(sampled)}
    block["collapsed"] = block["collapsed"] or any(mode["collapsed"] for mode in by_mode.values())
    for name, mode in by_mode.items():
        block["collapse_reasons"] += [f"{name}: {reason}" for reason in mode["collapse_reasons"]]
    block.update(by_mode)
    return block


def sample_prompts(prompts: Sequence[list[Message]], count: int, seed: int) -> list[list[Message]]:
    """Up to `count` distinct prompts, the same for the same input and seed."""
    unique: dict[str, list[Message]] = {}
    for prompt in prompts:
        unique.setdefault(repr(prompt), prompt)
    keys = sorted(unique)
    chosen = random.Random(seed).sample(keys, min(count, len(keys)))
    return [unique[key] for key in chosen]


def generate_responses(
    model: Any,
    tokenizer: Any,
    prompts: list[list[Message]],
    *,
    do_sample: bool,
    seed: int,
    max_new_tokens: int,
    batch_size: int,
    max_prompt_length: int,
    temperature: float = 1.0,
    top_p: float = 0.95,
) -> list[Generation]:
    """Answer each prompt with `model.generate`, batched with left padding, no grad.

    Args:
        prompts: chat prompts (lists of `{"role", "content"}`); rendered with the chat
            template and the generation prompt exactly as training renders them
            (`prompt_format.render_prompt_ids`), shortened to `max_prompt_length` tokens as
            training shortens them (`prompt_format.fit_prompt_ids`: the system turn stays).
        do_sample: sample (temperature, top-p) when True, greedy otherwise.
        seed: sampling seed, drawn in a seeded section on the model's device (`rng.seeded`);
            the global torch generators are left as they were.
        max_new_tokens, batch_size: the answer bound and prompts per `generate` call (the
            evaluation passes its `EvalSettings`, where their defaults live).

    Returns:
        One `Generation` per prompt, in order; text decoded without special tokens,
        `num_tokens` counts new tokens up to the first eos.
    """
    import torch

    from simpo_core.rng import seeded
    from simpo_core.train.logps import model_device
    from simpo_core.train.prompt_format import fit_prompt_ids

    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    prompt_ids = [fit_prompt_ids(tokenizer, messages, max_prompt_length) for messages in prompts]
    results: list[Generation] = []
    was_training = model.training
    model.eval()
    try:
        # A seeded section on the model's device: the same answers whatever runs beside (a
        # concurrent sweep trial), and the caller's generators are left as they were.
        with seeded(seed, model_device(model)), torch.no_grad():
            for start in range(0, len(prompt_ids), batch_size):
                batch = prompt_ids[start : start + batch_size]
                results += _generate_batch(model, tokenizer, batch, do_sample, max_new_tokens, temperature, top_p)
    finally:
        model.train(was_training)
    return results


def _generate_batch(
    model: Any,
    tokenizer: Any,
    prompt_ids: list[list[int]],
    do_sample: bool,
    max_new_tokens: int,
    temperature: float,
    top_p: float,
) -> list[Generation]:
    from simpo_core.train.logps import model_device

    device = model_device(model)  # works for peft-wrapped and sharded models too
    encoded = {name: tensor.to(device) for name, tensor in left_pad(prompt_ids, tokenizer.pad_token_id).items()}
    eos_ids = _eos_ids(model, tokenizer)
    sampling = {"temperature": temperature, "top_p": top_p, "top_k": 0} if do_sample else {}
    output = model.generate(
        **encoded,
        max_new_tokens=max_new_tokens,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=eos_ids,
        do_sample=do_sample,
        **sampling,
    )
    new_tokens = output[:, encoded["input_ids"].shape[1] :].tolist()
    return [_to_generation(tokenizer, ids, set(eos_ids)) for ids in new_tokens]


def left_pad(prompt_ids: list[list[int]], pad_token_id: int) -> dict[str, Any]:
    """`input_ids` and `attention_mask` `(B, T)`, padded on the left so every prompt ends
    at the last column and generation continues right after it."""
    import torch

    width = max(len(row) for row in prompt_ids)
    input_ids = torch.tensor([[pad_token_id] * (width - len(row)) + row for row in prompt_ids], dtype=torch.long)
    attention_mask = torch.tensor([[0] * (width - len(row)) + [1] * len(row) for row in prompt_ids], dtype=torch.long)
    return {"input_ids": input_ids, "attention_mask": attention_mask}


def _eos_ids(model: Any, tokenizer: Any) -> list[int]:
    configured = getattr(model.generation_config, "eos_token_id", None)
    if configured is None:
        configured = tokenizer.eos_token_id
    if configured is None:
        raise ValueError("the model and tokenizer define no eos token; set generation_config.eos_token_id")
    return list(configured) if isinstance(configured, (list, tuple)) else [int(configured)]


def _to_generation(tokenizer: Any, ids: list[int], eos_ids: set[int]) -> Generation:
    end = next((index for index, token in enumerate(ids) if token in eos_ids), len(ids))
    text = tokenizer.decode(ids[:end], skip_special_tokens=True)
    return Generation(text=text, num_tokens=end)
