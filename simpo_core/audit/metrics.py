"""Length-bias figures of preference pairs, from token lengths alone (pure numpy).

Conventions: a pair is "chosen longer" when chosen has strictly more tokens; ties count as
not longer in `chosen_longer_fraction` and are excluded from `length_only_accuracy`.
"""

import math

import numpy as np

MAX_BUCKETS = 4


def length_report(chosen: np.ndarray, rejected: np.ndarray) -> dict:
    """Length statistics of pairs with `chosen[i]`, `rejected[i]` tokens, shape (N,).

    Returns:
        `pairs`, mean and median tokens, `chosen_longer_fraction`, `tie_fraction`,
        `length_only_accuracy` (how often "the longer one is chosen" is right, ties
        excluded; 0.5 when every pair is a tie), `length_bias_strength` (how well length
        predicts the label in either direction: max(accuracy, 1 − accuracy)),
        `bias_direction` ("chosen longer", "chosen shorter" or "none"), `point_biserial`
        and `buckets`.
    """
    chosen = np.asarray(chosen, dtype=np.float64)
    rejected = np.asarray(rejected, dtype=np.float64)
    pairs = len(chosen)
    if pairs == 0:
        return {
            "pairs": 0,
            "chosen_mean_tokens": 0.0,
            "rejected_mean_tokens": 0.0,
            "chosen_median_tokens": 0.0,
            "rejected_median_tokens": 0.0,
            "chosen_longer_fraction": 0.0,
            "tie_fraction": 0.0,
            "length_only_accuracy": 0.5,
            "length_bias_strength": 0.5,
            "bias_direction": "none",
            "point_biserial": 0.0,
            "mean_length_difference": 0.0,
            "buckets": [],
        }
    return {
        "pairs": pairs,
        "chosen_mean_tokens": float(chosen.mean()),
        "rejected_mean_tokens": float(rejected.mean()),
        "chosen_median_tokens": float(np.median(chosen)),
        "rejected_median_tokens": float(np.median(rejected)),
        **_balance(chosen, rejected),
        "point_biserial": point_biserial(chosen - rejected),
        "mean_length_difference": float((chosen - rejected).mean()),
        "buckets": length_buckets(chosen, rejected),
    }


def _balance(chosen: np.ndarray, rejected: np.ndarray) -> dict:
    longer = int((chosen > rejected).sum())
    shorter = int((chosen < rejected).sum())
    pairs = len(chosen)
    decided = longer + shorter
    accuracy = longer / decided if decided else 0.5
    return {
        "chosen_longer_fraction": longer / pairs,
        "tie_fraction": (pairs - decided) / pairs,
        "length_only_accuracy": accuracy,
        # Length predicts the label just as well when the chosen answer is mostly the shorter one.
        "length_bias_strength": max(accuracy, 1.0 - accuracy),
        "bias_direction": "chosen longer" if accuracy > 0.5 else "chosen shorter" if accuracy < 0.5 else "none",
    }


def point_biserial(differences: np.ndarray) -> float:
    """Point-biserial correlation of length difference with the preference label.

    Each pair is seen in both orders: (chosen, rejected) with label 1 and difference d,
    (rejected, chosen) with label 0 and difference -d. The correlation of difference with
    label over those 2N points reduces to mean(d) / sqrt(mean(d^2)): +1 when the chosen is
    always longer by the same amount, 0 without a length signal, 0.0 when all d are 0.
    """
    d = np.asarray(differences, dtype=np.float64)
    rms = math.sqrt(float((d * d).mean())) if len(d) else 0.0
    return float(d.mean() / rms) if rms > 0 else 0.0


def length_buckets(chosen: np.ndarray, rejected: np.ndarray, buckets: int = MAX_BUCKETS) -> list[dict]:
    """The balance figures per quantile bucket of the pair's mean length (tokens)."""
    mean_length = (chosen + rejected) / 2.0
    edges = np.unique(np.quantile(mean_length, np.linspace(0.0, 1.0, buckets + 1)))
    if len(edges) < 2:
        edges = np.array([edges[0], edges[0]])
    # Bucket i holds edges[i] <= length < edges[i+1]; the last one includes its upper edge.
    index = np.clip(np.searchsorted(edges, mean_length, side="right") - 1, 0, len(edges) - 2)
    table = []
    for bucket in range(len(edges) - 1):
        mask = index == bucket
        if not mask.any():
            continue
        table.append(
            {
                "min_tokens": float(edges[bucket]),
                "max_tokens": float(edges[bucket + 1]),
                "pairs": int(mask.sum()),
                "chosen_mean_tokens": float(chosen[mask].mean()),
                "rejected_mean_tokens": float(rejected[mask].mean()),
                **_balance(chosen[mask], rejected[mask]),
            }
        )
    return table


def rebalance_drops(chosen: np.ndarray, rejected: np.ndarray, order: np.ndarray, tolerance: float) -> np.ndarray:
    """Positions to drop, as few as possible, so `chosen_longer_fraction` ends within
    0.5 ± `tolerance`. Among the pairs on the over-represented side, those first in
    `order` (a per-pair tie-breaking key, e.g. a seeded hash) are dropped first.

    Returns:
        Sorted int positions; empty when the fraction is already within tolerance.

    Raises:
        ValueError: the balance cannot be reached (e.g. the chosen is longer in every pair).
    """
    chosen, rejected = np.asarray(chosen), np.asarray(rejected)
    pairs = len(chosen)
    longer = chosen > rejected
    count = int(longer.sum())
    high, low = 0.5 + tolerance, 0.5 - tolerance
    if pairs == 0 or low <= count / pairs <= high:
        return np.array([], dtype=np.int64)
    if count / pairs > high:
        # (count - k) / (pairs - k) <= high  <=>  k >= (count - high * pairs) / (1 - high)
        k = _smallest_k(lambda k: (count - k) <= high * (pairs - k), (count - high * pairs) / (1.0 - high))
        candidates = np.flatnonzero(longer)
        if k >= pairs or count == pairs:
            raise ValueError("the chosen response is longer in every pair; no subset is balanced")
    else:
        # count / (pairs - k) >= low  <=>  k >= pairs - count / low
        if count == 0:
            raise ValueError("the chosen response is never longer; no subset is balanced")
        k = _smallest_k(lambda k: count >= low * (pairs - k), pairs - count / low)
        shorter, tied = np.flatnonzero(chosen < rejected), np.flatnonzero(chosen == rejected)
        candidates = np.concatenate(
            [shorter[np.argsort(order[shorter], kind="stable")], tied[np.argsort(order[tied], kind="stable")]]
        )
        return np.sort(candidates[:k])
    picked = candidates[np.argsort(order[candidates], kind="stable")[:k]]
    return np.sort(picked)


def _smallest_k(holds, estimate: float) -> int:
    k = max(0, math.ceil(estimate - 1e-9))
    while k > 0 and holds(k - 1):
        k -= 1
    while not holds(k):
        k += 1
    return k
