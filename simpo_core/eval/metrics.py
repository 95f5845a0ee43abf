"""Held-out preference metrics computed from plain arrays (no model, no torch needed).

Everything takes per-pair arrays of shape `(N,)`: length-normalised log-probs of the chosen
and rejected responses and their token counts. The implicit SimPO reward of a response is
`β · avg log-prob`; a pair is *correct* when the chosen reward is strictly greater than the
rejected one (a tie counts as wrong, as in TRL's `rewards/accuracies`).

Length diagnostics answer "did the model learn the preference or just 'longer wins'?":
accuracy on pairs where the chosen response is longer and where it is shorter, and their
mean, `length_controlled_accuracy`, which a length-only scorer cannot push above 0.5.
"""

import logging
import math
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

logger = logging.getLogger(__name__)

CONFIDENCE = 0.95
N_RESAMPLES = 2000
# Buckets of the relative length difference r = (chosen − rejected) / longer response.
LENGTH_BUCKETS: tuple[tuple[str, float, float], ...] = (
    # (label, low, high): the pairs with low <= r < high on the shorter side, low < r <= high
    # on the longer side, so r = 0 (equal length) falls in neither and gets its own bucket.
    ("chosen shorter by >25%", -math.inf, -0.25),
    ("chosen shorter by ≤25%", -0.25, 0.0),
    ("chosen longer by ≤25%", 0.0, 0.25),
    ("chosen longer by >25%", 0.25, math.inf),
)


def as_array(values: Sequence[float] | np.ndarray, name: str) -> np.ndarray:
    """A 1-D float64 numpy copy of a list, numpy array or torch tensor `(N,)`."""
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one value per pair, shape (N,); got shape {array.shape}")
    return array


def correct_pairs(chosen_rewards: np.ndarray, rejected_rewards: np.ndarray) -> np.ndarray:
    """`(N,)` bool: the chosen reward is strictly greater (ties are wrong)."""
    if chosen_rewards.shape != rejected_rewards.shape:
        raise ValueError(
            f"chosen and rejected rewards must have the same shape (N,); got "
            f"{chosen_rewards.shape} and {rejected_rewards.shape}"
        )
    return chosen_rewards > rejected_rewards


def bootstrap_ci(
    values: np.ndarray,
    *,
    confidence: float = CONFIDENCE,
    n_resamples: int = N_RESAMPLES,
    seed: int,
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of `values` `(N,)`.

    Pass per-pair correctness (0/1) for an accuracy interval, or the paired differences
    `trained_correct − base_correct` for an interval on the accuracy delta. Deterministic
    for a given seed; resampled in chunks so memory stays small for large N.

    Returns:
        `(low, high)`; `(nan, nan)` for an empty input.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    chunk = max(1, min(n_resamples, 4_000_000 // values.size))
    means: list[np.ndarray] = []
    for start in range(0, n_resamples, chunk):
        size = min(chunk, n_resamples - start)
        means.append(values[rng.integers(0, values.size, size=(size, values.size))].mean(axis=1))
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(np.concatenate(means), [alpha, 1.0 - alpha])
    return (float(low), float(high))


def length_split_accuracy(
    correct: np.ndarray, chosen_lengths: np.ndarray, rejected_lengths: np.ndarray
) -> dict[str, float | int | None]:
    """Accuracy where the chosen response is longer, where it is shorter, and their mean.

    Pairs of equal length belong to neither group. `length_controlled_accuracy` is None
    when one group is empty (the data cannot tell length from preference then);
    `length_controlled_pairs` is how many pairs it rests on (longer + shorter).
    """
    longer = chosen_lengths > rejected_lengths
    shorter = chosen_lengths < rejected_lengths
    accuracy_longer = _mean_or_none(correct[longer])
    accuracy_shorter = _mean_or_none(correct[shorter])
    controlled = None
    if accuracy_longer is not None and accuracy_shorter is not None:
        controlled = (accuracy_longer + accuracy_shorter) / 2.0
    return {
        "length_controlled_accuracy": controlled,
        "accuracy_chosen_longer": accuracy_longer,
        "accuracy_chosen_shorter": accuracy_shorter,
        "pairs_chosen_longer": int(longer.sum()),
        "pairs_chosen_shorter": int(shorter.sum()),
        "pairs_equal_length": int((~longer & ~shorter).sum()),
        "length_controlled_pairs": int(longer.sum() + shorter.sum()),
    }


def spearman(x: np.ndarray, y: np.ndarray) -> float | None:
    """Spearman rank correlation (ties get average ranks); None when either side is constant."""
    if x.size < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return None
    from scipy.stats import spearmanr

    return float(spearmanr(x, y).statistic)


def length_reward_correlation(
    chosen_rewards: np.ndarray,
    rejected_rewards: np.ndarray,
    chosen_lengths: np.ndarray,
    rejected_lengths: np.ndarray,
) -> float | None:
    """Spearman between response length and implicit reward over all `2N` responses."""
    lengths = np.concatenate([chosen_lengths, rejected_lengths])
    rewards = np.concatenate([chosen_rewards, rejected_rewards])
    return spearman(lengths, rewards)


def accuracy_by_length_bucket(
    correct: np.ndarray, chosen_lengths: np.ndarray, rejected_lengths: np.ndarray
) -> list[dict[str, float | int | str | None]]:
    """Accuracy per bucket of relative length difference `(chosen − rejected) / longer`.

    Equal-length pairs get their own bucket. A "longer wins" model scores 0 in the
    "shorter" buckets and 1 in the "longer" ones; a model that learned the preference is
    flat across buckets.
    """
    longest = np.maximum(np.maximum(chosen_lengths, rejected_lengths), 1)
    relative = (chosen_lengths - rejected_lengths) / longest
    buckets = []
    for label, low, high in LENGTH_BUCKETS:
        if high <= 0.0:
            in_bucket = (relative >= low) & (relative < high)
        else:
            in_bucket = (relative > low) & (relative <= high)
        buckets.append(_bucket(label, correct[in_bucket]))
    equal = relative == 0
    if equal.any():
        buckets.insert(2, _bucket("equal length", correct[equal]))
    return buckets


def preference_metrics(
    chosen_logps: Sequence[float] | np.ndarray,
    rejected_logps: Sequence[float] | np.ndarray,
    chosen_lengths: Sequence[float] | np.ndarray,
    rejected_lengths: Sequence[float] | np.ndarray,
    *,
    beta: float,
    losses: Sequence[float] | np.ndarray | None = None,
    seed: int,
    lengths_measured: Literal["before truncation", "after truncation"] = "after truncation",
) -> dict[str, object]:
    """The preference block of one model on N held-out pairs.

    Args:
        chosen_logps, rejected_logps: `(N,)` mean per-token log-probs of the responses.
        chosen_lengths, rejected_lengths: `(N,)` response token counts.
        beta: reward scale β; rewards are β · avg log-prob.
        losses: `(N,)` per-pair SimPO losses; `loss` is their mean (None when not given).
        seed: bootstrap seed.
        lengths_measured: whether the token counts are of the whole answers ("before
            truncation") or of the scored ones ("after truncation"), reported as
            `length_sides_measured`.

    Returns:
        `reward_accuracy` (strict >), `reward_accuracy_ci` (95% bootstrap), `reward_margin`
        (mean β·(chosen − rejected)), `logps_chosen`, `logps_rejected`, `loss`, the length
        split accuracies and `length_controlled_pairs`, `length_reward_correlation`,
        `accuracy_by_length_bucket`, `length_sides_measured`, and per pair `pair_outcomes`
        ("1" correct / "0") and `pair_length_sides` ("L" chosen longer, "S" shorter, "E"
        equal), one character per pair.

    Raises:
        ValueError: the arrays are empty or their shapes differ.
    """
    chosen, rejected = as_array(chosen_logps, "chosen_logps"), as_array(rejected_logps, "rejected_logps")
    c_len, r_len = as_array(chosen_lengths, "chosen_lengths"), as_array(rejected_lengths, "rejected_lengths")
    if chosen.size == 0 or not chosen.shape == rejected.shape == c_len.shape == r_len.shape:
        raise ValueError(
            "need the same non-zero number of pairs in every array; got chosen_logps "
            f"{chosen.shape}, rejected_logps {rejected.shape}, chosen_lengths {c_len.shape}, "
            f"rejected_lengths {r_len.shape}"
        )
    chosen_rewards, rejected_rewards = beta * chosen, beta * rejected
    correct = correct_pairs(chosen_rewards, rejected_rewards)
    block: dict[str, object] = {
        "pairs": int(chosen.size),
        "reward_accuracy": float(correct.mean()),
        "reward_accuracy_ci": bootstrap_ci(correct.astype(float), seed=seed),
        "reward_margin": float((chosen_rewards - rejected_rewards).mean()),
        "rewards_chosen": float(chosen_rewards.mean()),
        "rewards_rejected": float(rejected_rewards.mean()),
        "logps_chosen": float(chosen.mean()),
        "logps_rejected": float(rejected.mean()),
        "loss": None if losses is None else float(as_array(losses, "losses").mean()),
    }
    block.update(length_split_accuracy(correct, c_len, r_len))
    block["length_sides_measured"] = lengths_measured
    # Per-pair verdicts and length sides, compact: the champion gate's paired tests need them.
    block["pair_outcomes"] = "".join("1" if ok else "0" for ok in correct)
    block["pair_length_sides"] = "".join("L" if c > r else "S" if c < r else "E" for c, r in zip(c_len, r_len))
    block["length_reward_correlation"] = length_reward_correlation(chosen_rewards, rejected_rewards, c_len, r_len)
    block["accuracy_by_length_bucket"] = accuracy_by_length_bucket(correct, c_len, r_len)
    return block


DELTA_KEYS = (
    "reward_accuracy",
    "reward_margin",
    "logps_chosen",
    "logps_rejected",
    "loss",
    "length_controlled_accuracy",
    "accuracy_chosen_longer",
    "accuracy_chosen_shorter",
    "length_reward_correlation",
)
GENERATION_DELTA_KEYS = ("mean_length", "repetition_rate", "empty_rate")


def delta_metrics(
    base: dict[str, Any],
    trained: dict[str, Any],
    base_correct: np.ndarray,
    trained_correct: np.ndarray,
    *,
    seed: int,
) -> dict[str, Any]:
    """Trained minus base for each metric, and a paired bootstrap interval on the accuracy gain.

    Args:
        base, trained: the two models' blocks on the same pairs.
        base_correct, trained_correct: `(N,)` bool per-pair correctness, same pair order.

    Returns:
        The differences (None where either side is None), `reward_accuracy_ci` (95%, paired:
        resampling pairs keeps each pair's two verdicts together), `reward_accuracy_improved`
        (that interval lies above 0) and `generation` (length, repetition, empty-rate changes).
    """
    delta: dict[str, Any] = {key: _difference(trained[key], base[key]) for key in DELTA_KEYS}
    paired = trained_correct.astype(float) - base_correct.astype(float)  # (N,) in {-1, 0, 1}
    delta["reward_accuracy_ci"] = bootstrap_ci(paired, seed=seed)
    delta["reward_accuracy_improved"] = bool(delta["reward_accuracy_ci"][0] > 0)
    base_gen, trained_gen = base.get("generation"), trained.get("generation")
    delta["generation"] = (
        {key: trained_gen[key] - base_gen[key] for key in GENERATION_DELTA_KEYS} if base_gen and trained_gen else None
    )
    return delta


def _difference(trained: float | None, base: float | None) -> float | None:
    return None if trained is None or base is None else trained - base


def _mean_or_none(values: np.ndarray) -> float | None:
    return float(values.mean()) if values.size else None


def _bucket(label: str, correct: np.ndarray) -> dict[str, float | int | str | None]:
    return {"bucket": label, "pairs": int(correct.size), "accuracy": _mean_or_none(correct)}
