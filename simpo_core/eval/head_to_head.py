"""The judged head-to-head: the challenger's answers against a reference model's, prompt by prompt.

The champion gate can decide on what the two models write, not only on how the policy
ranks two fixed answers. Both models answer the same held-out prompts with the same seed and
settings (greedy by default), the configured judge scores every answer, and each prompt is a
win, a loss or a tie for the challenger:

- `win_rate` = (wins + ½ ties) / judged;
- `p_value`: the exact one-sided sign test of "the challenger is better", ties excluded:
  under "equally good" `wins ~ Binomial(wins + losses, ½)` and p = P(X ≥ wins);
  `p_value_worse` = P(X ≤ wins) is the same test of "the challenger is worse";
- `lc_win_rate`: the length-controlled win rate, the AlpacaEval 2 approach: a logistic model
  of P(win) on the normalised length difference `tanh((chars_challenger − chars_reference) / sd)`
  (sd: the standard deviation of those differences over the judged prompts), a tie entering
  as half a win (target ½), fitted by Newton's method with an L2 penalty `ridge × slope² / 2`
  on the slope only, read at zero length difference: σ(intercept). Without length variation
  it equals `win_rate`; when every prompt is a win (or every one a loss) the fit has no
  finite optimum and it is `win_rate` (1 or 0): length cannot explain outcomes that never vary.

Pure functions (the statistics) are separate from the model work (`judge_head_to_head`).
"""

import logging
import random
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from simpo_core.data.schema import Message
from simpo_core.errors import ConfigError
from simpo_core.eval.generation import Generation, generate_responses, sample_prompts
from simpo_core.eval.heldout import normalize_pairs
from simpo_core.eval.judges import ScoreFn, judge_for, win_rate
from simpo_core.eval.settings import EvalSettings
from simpo_core.gate.paired_test import binomial_tail_at_least

logger = logging.getLogger(__name__)

LC_RIDGE = 1.0  # L2 penalty on the length slope: a N(0, 1) prior, so a few prompts cannot make it extreme
NEWTON_STEPS = 50  # Newton converges in a handful of steps; the cap only guards degenerate inputs
SAMPLES = 3  # answer pairs quoted for the model card
SIGN_TEST = "exact sign test on wins vs losses, ties excluded (p_value: one-sided, challenger better)"


def sign_test(wins: int, losses: int) -> tuple[float, float]:
    """Exact one-sided sign test p-values `(better, worse)`: P(X ≥ wins) and P(X ≤ wins) for
    X ~ Binomial(wins + losses, ½). Both are 1 when there is no win and no loss."""
    if wins < 0 or losses < 0:
        raise ValueError(f"wins and losses must be counts >= 0; got {wins} and {losses}")
    return binomial_tail_at_least(wins, wins + losses, 0.5), binomial_tail_at_least(losses, wins + losses, 0.5)


def length_controlled_win_rate(
    outcomes: Sequence[float], length_differences: Sequence[float], ridge: float = LC_RIDGE
) -> dict[str, float] | None:
    """Win rate at zero length difference from a logistic fit of P(win) on the length difference.

    Args:
        outcomes: `(N,)` per prompt 1 (win), ½ (tie) or 0 (loss) for the challenger.
        length_differences: `(N,)` challenger's answer length minus the reference's.
        ridge: L2 penalty on the slope (≥ 0; 0 only for outcomes that length does not separate).

    Returns:
        `{"lc_win_rate", "intercept", "slope", "scale"}` (the fit logit P = intercept +
        slope × tanh(difference / scale)), or None when N is 0.
    """
    y, d = np.asarray(outcomes, dtype=float), np.asarray(length_differences, dtype=float)
    if y.shape != d.shape or y.ndim != 1:
        raise ValueError(f"need one outcome and one length difference per prompt; got {y.shape} and {d.shape}")
    if not y.size:
        return None
    scale = float(d.std())
    x = np.tanh(d / scale) if scale > 0 else np.zeros_like(d)  # equal differences: nothing to adjust for
    if np.all(y == 1.0) or np.all(y == 0.0):  # the optimum is at infinity: σ(intercept) is y itself
        return {"lc_win_rate": float(y[0]), "intercept": None, "slope": 0.0, "scale": scale}
    intercept, slope = _fit_logistic(y, x, ridge)
    return {"lc_win_rate": float(1 / (1 + np.exp(-intercept))), "intercept": intercept, "slope": slope, "scale": scale}


def _fit_logistic(y: np.ndarray, x: np.ndarray, ridge: float) -> tuple[float, float]:
    """(intercept, slope) minimising the cross-entropy with soft targets `y` plus `ridge × slope² / 2`:
    Newton steps, halved until the penalised loss does not rise (robust near separation)."""
    features = np.stack([np.ones_like(x), x], axis=1)
    penalty = np.diag([0.0, ridge])
    theta = np.zeros(2)

    def loss(params: np.ndarray) -> float:
        z = features @ params
        return float(np.sum(np.logaddexp(0, z) - y * z) + 0.5 * ridge * params[1] ** 2)

    for _ in range(NEWTON_STEPS):
        p = 1 / (1 + np.exp(-(features @ theta)))
        gradient = features.T @ (p - y) + penalty @ theta
        hessian = features.T @ (features * (p * (1 - p))[:, None]) + penalty + 1e-12 * np.eye(2)
        step = np.linalg.solve(hessian, gradient)
        size, before = 1.0, loss(theta)
        while size > 1e-6 and loss(theta - size * step) > before:
            size /= 2
        theta = theta - size * step
        if np.max(np.abs(size * step)) < 1e-10:
            break
    return float(theta[0]), float(theta[1])


def head_to_head_block(
    prompts: list[list[Message]],
    challenger_answers: list[str],
    reference_answers: list[str],
    challenger_scores: list[float | None],
    reference_scores: list[float | None],
    *,
    seed: int,
) -> dict[str, Any]:
    """The `judge_vs_champion` figures from the judge's scores of both models' answers.

    Prompts where either score is None are left out (`skipped`). Returns `judged`, `wins`,
    `losses`, `ties`, `win_rate` (ties half; None when nothing was judged), `win_rate_ci`
    (95% bootstrap), `lc_win_rate` and `lc_fit`, `p_value` and `p_value_worse`, `test`,
    `skipped`, the mean answer lengths in characters and `samples` (up to three judged
    prompts, chosen by `seed`, with both answers and scores).
    """
    if not len(prompts) == len(challenger_answers) == len(reference_answers):
        raise ValueError(
            f"need one answer of each model per prompt; got {len(prompts)} prompts, "
            f"{len(challenger_answers)} challenger and {len(reference_answers)} reference answers"
        )
    keep = [i for i, (c, r) in enumerate(zip(challenger_scores, reference_scores)) if c is not None and r is not None]
    mine = np.array([challenger_scores[i] for i in keep], dtype=float)
    theirs = np.array([reference_scores[i] for i in keep], dtype=float)
    counts = win_rate(theirs, mine, seed=seed)
    outcomes = np.where(mine > theirs, 1.0, np.where(mine < theirs, 0.0, 0.5))
    lengths = [len(challenger_answers[i]) - len(reference_answers[i]) for i in keep]
    fit = length_controlled_win_rate(outcomes, lengths)
    better, worse = sign_test(counts["wins"], counts["losses"])
    picked = sorted(random.Random(seed).sample(keep, min(SAMPLES, len(keep))))
    return {
        **counts,
        "lc_win_rate": fit["lc_win_rate"] if fit else None,
        "lc_fit": {key: value for key, value in fit.items() if key != "lc_win_rate"} if fit else None,
        "p_value": better,
        "p_value_worse": worse,
        "test": SIGN_TEST,
        "skipped": len(prompts) - len(keep),
        "mean_chars_challenger": float(np.mean([len(challenger_answers[i]) for i in keep])) if keep else None,
        "mean_chars_reference": float(np.mean([len(reference_answers[i]) for i in keep])) if keep else None,
        "samples": [
            {
                "prompt": _last_user_turn(prompts[i]),
                "challenger": challenger_answers[i],
                "reference": reference_answers[i],
                "challenger_score": challenger_scores[i],
                "reference_score": reference_scores[i],
            }
            for i in picked
        ],
    }


def judge_head_to_head(
    challenger: tuple[Any, Any],
    reference: tuple[Any, Any],
    pairs: Any,
    settings: EvalSettings,
    *,
    reference_name: str,
    do_sample: bool = False,
    score_fn: ScoreFn | None = None,
    generator: Callable[..., list[Generation]] | None = None,
) -> dict[str, Any]:
    """Both models answer the same held-out prompts; the judge scores every answer.

    Args:
        challenger, reference: `(model, tokenizer)`; each model answers with its own tokenizer.
        pairs: the held-out pairs (DataFrame or rows); `settings.generation_samples` distinct
            prompts are sampled with `settings.seed`, the same prompts as the generation check.
        settings: the judge (`judge`, `reward_model_path`), answer bound, batch size, seed.
        reference_name: how the block names the reference, e.g. "champion v3".
        do_sample: sample (temperature 1, top-p 0.95) instead of greedy; each prompt is then
            answered alone with seed `settings.seed + index`, so both models draw the same
            random stream for it.
        score_fn, generator: replace the configured judge or `generate_responses` (tests).

    Returns:
        `head_to_head_block` plus `judge`, `reference`, `decoding`, `prompts` and `note`.

    Raises:
        ConfigError: no judge configured (`judge: none`), or a judge that cannot be built.
    """
    score_fn = score_fn or _configured_judge(settings)
    rows = normalize_pairs(pairs)
    prompts = sample_prompts([row["prompt"] for row in rows], settings.generation_samples, settings.seed)
    answer = _answerer(settings, do_sample, generator or generate_responses)
    mine, theirs = answer(*challenger, prompts), answer(*reference, prompts)
    scores = (score_fn(prompts, mine), score_fn(prompts, theirs)) if prompts else ([], [])
    block = head_to_head_block(prompts, mine, theirs, *scores, seed=settings.seed)
    logger.info(
        "answers vs %s: %d wins, %d losses, %d ties (win rate %s, sign test p=%.3g)",
        reference_name,
        block["wins"],
        block["losses"],
        block["ties"],
        block["win_rate"],
        block["p_value"],
    )
    decoding = "sampled, temperature 1, top-p 0.95, seed per prompt" if do_sample else "greedy"
    return {
        "judge": settings.judge,
        "reference": reference_name,
        "decoding": decoding,
        "prompts": len(prompts),
        **block,
        "note": _note(len(prompts), block["judged"]),
    }


def _configured_judge(settings: EvalSettings) -> ScoreFn:
    score_fn = judge_for(settings)
    if score_fn is None:
        raise ConfigError("the judged head-to-head needs a judge: set eval.judge to synthetic or reward-model")
    return score_fn


def _answerer(settings: EvalSettings, do_sample: bool, generator: Callable[..., list[Generation]]) -> Callable:
    options = dict(
        max_new_tokens=settings.max_new_tokens,
        batch_size=settings.batch_size,
        max_prompt_length=settings.max_prompt_length,
    )

    def answer(model: Any, tokenizer: Any, prompts: list[list[Message]]) -> list[str]:
        if not prompts:
            return []
        if not do_sample:
            return [
                g.text for g in generator(model, tokenizer, prompts, do_sample=False, seed=settings.seed, **options)
            ]
        return [  # one prompt per call: its random draws do not depend on which prompts share its batch
            generator(model, tokenizer, [prompt], do_sample=True, seed=settings.seed + index, **options)[0].text
            for index, prompt in enumerate(prompts)
        ]

    return answer


def _note(total: int, judged: int) -> str:
    if total == 0:
        return "no prompt answered (eval.generation_samples is 0)"
    if judged == 0:
        return f"the judge scored none of the {total} answer pairs; it does not apply to these prompts"
    return f"{total - judged} of {total} prompts could not be judged and were left out" if judged < total else ""


def _last_user_turn(messages: list[Message]) -> str:
    return next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
