"""Score held-out pairs with one model: per-pair log-probs, then the preference block.

The log-probs come from the training code (`compute_pair_logps`: the same tokenization and
truncation). The length figures (`pair_length_sides`, the length-controlled accuracy, the
length buckets and the length-reward correlation) are measured on the whole answers, before
truncation, when the scorer reports their token counts: an answer cut to fit `max_length`
would otherwise look as long as its pair's other answer, and "equal length" would not mean
equal. `length_sides_measured` says which counts were used.
"""

from collections.abc import Callable
from typing import Any

import numpy as np

from simpo_core.data.schema import CanonicalPair
from simpo_core.eval.metrics import as_array, preference_metrics
from simpo_core.eval.settings import EvalSettings

PairScorer = Callable[..., dict[str, Any]]
"""`(model, tokenizer, rows, *, max_length, max_prompt_length, batch_size)` → the
`compute_pair_logps` dict: `chosen_logps`, `rejected_logps`, `chosen_lengths`, `rejected_lengths`
(scored tokens, after truncation); optionally `chosen_full_lengths`, `rejected_full_lengths`
(tokens of the whole answers, before truncation)."""

BEFORE_TRUNCATION, AFTER_TRUNCATION = "before truncation", "after truncation"


def default_scorer(model: Any, tokenizer: Any, rows: list[CanonicalPair], **options: Any) -> dict[str, Any]:
    """The training code's log-prob computation (`simpo_core.train.logps.compute_pair_logps`),
    plus the token counts of the whole answers (`response_ids`: EOS included, nothing cut)."""
    from simpo_core.train.logps import compute_pair_logps
    from simpo_core.train.tokenization import response_ids

    out = compute_pair_logps(model, tokenizer, rows, average=True, **options)
    for side in ("chosen", "rejected"):
        out[f"{side}_full_lengths"] = [len(response_ids(tokenizer, row[side])) for row in rows]
    return out


def score_model(
    model: Any, tokenizer: Any, rows: list[CanonicalPair], settings: EvalSettings, scorer: PairScorer
) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """One model's preference block on N pairs.

    Returns:
        `(block, correct, margins)`: the `preference_metrics` block plus `truncated_pairs`
        (pairs with an answer cut when scored; None when the scorer gives no whole-answer
        counts), `(N,)` bool correctness and `(N,)` margins β·(chosen − rejected).

    Raises:
        ValueError: the scorer returned a different number of pairs.
    """
    import torch

    from simpo_core.train.loss import simpo_loss

    limits = {"max_length": settings.max_length, "max_prompt_length": settings.max_prompt_length}
    out = scorer(model, tokenizer, rows, batch_size=settings.batch_size, **limits)
    chosen, rejected = as_array(out["chosen_logps"], "chosen_logps"), as_array(out["rejected_logps"], "rejected_logps")
    if chosen.shape != (len(rows),):
        raise ValueError(f"the log-prob scorer returned {chosen.shape[0]} values for {len(rows)} pairs")
    losses, _, _ = simpo_loss(torch.from_numpy(chosen), torch.from_numpy(rejected), settings.beta, settings.gamma)
    lengths, measured, truncated = _lengths(out)
    block = preference_metrics(
        chosen, rejected, *lengths, beta=settings.beta, losses=losses, seed=settings.seed, lengths_measured=measured
    )
    block["truncated_pairs"] = truncated
    margins = settings.beta * (chosen - rejected)
    return block, margins > 0, margins


def _lengths(out: dict[str, Any]) -> tuple[tuple[np.ndarray, np.ndarray], str, int | None]:
    """The (chosen, rejected) counts the length figures use, when they were measured, and how
    many pairs scoring truncated (None when unknown)."""
    scored = (as_array(out["chosen_lengths"], "chosen_lengths"), as_array(out["rejected_lengths"], "rejected_lengths"))
    if "chosen_full_lengths" not in out:
        return scored, AFTER_TRUNCATION, None
    full = (
        as_array(out["chosen_full_lengths"], "chosen_full_lengths"),
        as_array(out["rejected_full_lengths"], "rejected_full_lengths"),
    )
    truncated = int(((full[0] > scored[0]) | (full[1] > scored[1])).sum())
    return full, BEFORE_TRUNCATION, truncated
