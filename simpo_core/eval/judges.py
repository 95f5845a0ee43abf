"""Pluggable judges: which of two answers to the same prompt is better, trained or base?

A judge scores each answer; the comparison (win rate, length-controlled win rate) is shared.
Built in, both offline:

- `synthetic`: the rule that generated the project's demo data (`score_response`), so an
  answer is scored exactly. Prompts that are not synthetic are skipped, with a note.
- `reward-model`: a local `AutoModelForSequenceClassification` folder (code from the model
  is never run: `trust_remote_code=False`, safetensors only).

Add one with `register_judge("name", factory)`; a factory takes keyword options and returns
a callable `(prompts, answers) -> scores`, or None.
"""

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from simpo_core.data.schema import Message
from simpo_core.errors import ConfigError
from simpo_core.eval.metrics import bootstrap_ci

logger = logging.getLogger(__name__)

ScoreFn = Callable[[list[list[Message]], list[str]], list[float | None]]
"""Scores answers to prompts, one float per answer; None where the judge cannot score it."""

LENGTH_MATCH_TOLERANCE = 0.2  # answers within 20% of each other's length count as length-matched
_REGISTRY: dict[str, Callable[..., ScoreFn]] = {}


def register_judge(name: str, factory: Callable[..., ScoreFn]) -> None:
    """Make `factory(**options) -> ScoreFn` available as judge `name`."""
    _REGISTRY[name] = factory


def available_judges() -> list[str]:
    """Names accepted by `build_judge` (plus "none")."""
    return sorted(_REGISTRY)


def build_judge(name: str, **options: Any) -> ScoreFn | None:
    """The score function of judge `name`; None for "none".

    Raises:
        ConfigError: unknown name, or options the judge needs are missing.
    """
    if name in ("none", "", None):
        return None
    if name not in _REGISTRY:
        raise ConfigError(f"unknown judge {name!r}; choose one of {available_judges() + ['none']}")
    return _REGISTRY[name](**options)


def judge_for(settings: Any) -> ScoreFn | None:
    """The judge an evaluation's settings name (`EvalSettings.judge`), with its reward-model
    options (path, batch size, length bound, device); None for "none"."""
    return build_judge(
        settings.judge,
        reward_model_path=settings.reward_model_path,
        batch_size=settings.batch_size,
        max_length=settings.max_length,
        device=settings.device,
    )


def win_rate(base_scores: Sequence[float], trained_scores: Sequence[float], seed: int) -> dict[str, Any]:
    """Share of prompts where the trained answer scores higher; a tie counts half.

    Args:
        base_scores, trained_scores: `(N,)` judge scores of the two answers per prompt.

    Returns:
        `win_rate`, `win_rate_ci` (95% bootstrap), `wins`, `ties`, `losses`, `judged`;
        the rate and interval are None when N is 0.
    """
    base, trained = np.asarray(base_scores, dtype=float), np.asarray(trained_scores, dtype=float)
    if base.shape != trained.shape:
        raise ValueError(f"need one base and one trained score per prompt; got {base.shape} and {trained.shape}")
    outcome = np.where(trained > base, 1.0, np.where(trained < base, 0.0, 0.5))
    return {
        "win_rate": float(outcome.mean()) if outcome.size else None,
        "win_rate_ci": bootstrap_ci(outcome, seed=seed) if outcome.size else None,
        "wins": int((outcome == 1.0).sum()),
        "ties": int((outcome == 0.5).sum()),
        "losses": int((outcome == 0.0).sum()),
        "judged": int(outcome.size),
    }


def length_matched(
    base_lengths: Sequence[float], trained_lengths: Sequence[float], tolerance: float = LENGTH_MATCH_TOLERANCE
) -> np.ndarray:
    """`(N,)` bool: the two answers' lengths differ by at most `tolerance` × the longer one."""
    base, trained = np.asarray(base_lengths, dtype=float), np.asarray(trained_lengths, dtype=float)
    return np.abs(base - trained) <= tolerance * np.maximum(base, trained)


def compare_answers(
    score_fn: ScoreFn,
    prompts: list[list[Message]],
    base_answers: list[str],
    trained_answers: list[str],
    *,
    seed: int,
) -> dict[str, Any]:
    """Judge trained against base answers to the same prompts.

    Returns:
        The `win_rate` fields over every prompt the judge could score, plus
        `length_controlled_win_rate` and `length_matched_pairs` (only pairs whose answer
        lengths, in characters, are within 20% of each other), `mean_score_base`,
        `mean_score_trained`, `skipped` (prompts the judge could not score) and `note`.
    """
    if not len(prompts) == len(base_answers) == len(trained_answers):
        raise ValueError(
            f"need one base and one trained answer per prompt; got {len(prompts)} prompts, "
            f"{len(base_answers)} base and {len(trained_answers)} trained answers"
        )
    base_scores, trained_scores = score_fn(prompts, base_answers), score_fn(prompts, trained_answers)
    keep = [i for i, (b, t) in enumerate(zip(base_scores, trained_scores)) if b is not None and t is not None]
    base = np.array([base_scores[i] for i in keep], dtype=float)
    trained = np.array([trained_scores[i] for i in keep], dtype=float)
    result = win_rate(base, trained, seed=seed)
    matched = length_matched([len(base_answers[i]) for i in keep], [len(trained_answers[i]) for i in keep])
    controlled = win_rate(base[matched], trained[matched], seed=seed)
    result.update(
        length_controlled_win_rate=controlled["win_rate"],
        length_controlled_win_rate_ci=controlled["win_rate_ci"],
        length_matched_pairs=int(matched.sum()),
        mean_score_base=float(base.mean()) if keep else None,
        mean_score_trained=float(trained.mean()) if keep else None,
        skipped=len(prompts) - len(keep),
        note=_note(len(prompts), len(keep)),
    )
    return result


def _note(total: int, judged: int) -> str:
    if judged == 0:
        return f"no prompt could be judged (0 of {total}); the judge does not apply to these prompts"
    if judged < total:
        return f"{total - judged} of {total} prompts could not be judged and were left out"
    return ""


def synthetic_judge() -> ScoreFn:
    """Scores answers with the synthetic data's own rule; None for prompts that are not synthetic."""
    from simpo_core.data.synthetic import prompt_category, score_response

    def score(prompts: list[list[Message]], answers: list[str]) -> list[float | None]:
        scores: list[float | None] = []
        for messages, answer in zip(prompts, answers):
            question = _last_user_turn(messages)
            scores.append(score_response(question, answer) if prompt_category(question) else None)
        return scores

    return score


def reward_model_judge(
    reward_model_path: str | Path | None = None,
    *,
    batch_size: int,
    max_length: int,
    device: str = "auto",
    trust_remote_code: bool = False,
) -> ScoreFn:
    """Scores answers with a local sequence-classification reward model, on `device` (`auto`,
    `cpu`, `cuda`, `cuda:N`: the evaluation's device).

    `trust_remote_code` runs code shipped with the reward model (some, such as ArmoRM, need
    it): an explicit opt-in, logged.

    The conversation (prompt turns plus the answer as the assistant turn) is rendered with
    the reward model's chat template, or as "role: content" lines without one. The score
    is the single logit, or for several labels the log-probability of the last label.

    Raises:
        ConfigError: no path, a path that is not a local model folder, or a model that
            cannot be loaded.
    """
    if not reward_model_path:
        raise ConfigError(
            "the reward-model judge needs a local model folder: pass --reward-model-path PATH "
            "(eval.reward_model_path in the flow parameters)"
        )
    path = Path(reward_model_path).expanduser()
    if not (path / "config.json").exists():
        raise ConfigError(
            f"reward model {path} is not a local model folder with config.json; pass a folder "
            "written by save_pretrained (a sequence-classification model)"
        )
    model, tokenizer = _load_reward_model(path, trust_remote_code)
    from simpo_core.models import resolve_device

    model = model.to(resolve_device(device))

    def score(prompts: list[list[Message]], answers: list[str]) -> list[float | None]:
        texts = [_render_conversation(tokenizer, messages, answer) for messages, answer in zip(prompts, answers)]
        scores: list[float | None] = []
        for start in range(0, len(texts), batch_size):
            scores += _score_texts(model, tokenizer, texts[start : start + batch_size], max_length)
        return scores

    return score


def _load_reward_model(path: Path, trust_remote_code: bool = False) -> tuple[Any, Any]:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from simpo_core.building import one_build_at_a_time

    if trust_remote_code:
        logger.warning("running code shipped with reward model %s (judge trust_remote_code is on)", path)
    loading = {"trust_remote_code": trust_remote_code}
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, **loading)
        with one_build_at_a_time():
            model = AutoModelForSequenceClassification.from_pretrained(path, use_safetensors=True, **loading)
    except (OSError, ValueError) as error:
        needs = "" if trust_remote_code else ", loadable without trust_remote_code (or opt in to it)"
        raise ConfigError(
            f"could not load reward model {path}: {error}. It must be a local sequence-classification "
            f"model saved as safetensors{needs}"
        ) from error
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    tokenizer.truncation_side = "left"  # keep the answer when the conversation is too long
    model.eval()
    logger.info("loaded reward model %s (%d labels)", path, model.config.num_labels)
    return model, tokenizer


def _render_conversation(tokenizer: Any, messages: list[Message], answer: str) -> str:
    conversation = [*messages, {"role": "assistant", "content": answer}]
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(conversation, tokenize=False)
    return "".join(f"{m['role']}: {m['content']}\n" for m in conversation)


def _score_texts(model: Any, tokenizer: Any, texts: list[str], max_length: int) -> list[float]:
    import torch

    encoded = tokenizer(texts, return_tensors="pt", padding=True, truncation=True, max_length=max_length)
    from simpo_core.train.logps import model_device

    device = model_device(model)
    with torch.no_grad():
        logits = model(**{name: tensor.to(device) for name, tensor in encoded.items()}).logits.float()
    if logits.shape[-1] == 1:
        return logits[:, 0].tolist()
    return logits.log_softmax(-1)[:, -1].tolist()


def _last_user_turn(messages: list[Message]) -> str:
    return next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")


register_judge("synthetic", lambda **options: synthetic_judge())
register_judge("reward-model", reward_model_judge)
