"""Paired comparisons of two models on the same held-out pairs, for the champion gate.

Each model gets a per-pair verdict (1: the chosen answer has the higher reward). Only the
pairs where the two verdicts differ carry information about which model is better:
`b` pairs the challenger gets right and the reference wrong, `c` the other way round.
McNemar's exact test conditions on `n = b + c`: under "equally good", `b ~ Binomial(n, ½)`.
The gain in accuracy is `(b − c) / N`; exact (Clopper–Pearson) bounds on the share
`b / n` turn into one-sided bounds on the gain, so "the lower bound is above 0" is exactly
McNemar's one-sided test at the same confidence. Exact tests stay valid with the few
discordant pairs a small held-out set gives, where a bootstrap interval is too narrow.

Length-controlled accuracy averages the accuracy on pairs whose chosen answer is longer
and on those where it is shorter; its paired gain gets a normal (Wald) bound from the
discordant counts of each group. Standard library only.
"""

import math
from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import Any

LONGER, SHORTER, EQUAL = "L", "S", "E"  # per-pair length sides: the chosen answer is ...


@dataclass(frozen=True)
class PairedComparison:
    """Challenger vs reference on the same pairs, with one-sided bounds at `confidence`."""

    pairs: int
    challenger_only: int  # b: challenger right, reference wrong
    reference_only: int  # c: reference right, challenger wrong
    gain: float  # (b − c) / pairs
    gain_lower: float  # the gain is above this with probability `confidence`
    gain_upper: float  # ... and below this
    p_better: float  # exact one-sided McNemar p-value of "the challenger is better"
    p_worse: float  # ... of "the challenger is worse"
    confidence: float
    test: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _log_binomial_pmf(k: int, n: int, p: float) -> float:
    if p <= 0.0:
        return 0.0 if k == 0 else -math.inf
    if p >= 1.0:
        return 0.0 if k == n else -math.inf
    log_comb = math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)
    return log_comb + k * math.log(p) + (n - k) * math.log1p(-p)


def binomial_tail_at_least(k: int, n: int, p: float) -> float:
    """P(X ≥ k) for X ~ Binomial(n, p), summed in log space (stable for large n)."""
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    logs = [_log_binomial_pmf(i, n, p) for i in range(k, n + 1)]
    top = max(logs)
    if top == -math.inf:
        return 0.0
    return min(1.0, math.exp(top) * sum(math.exp(value - top) for value in logs))


def clopper_pearson_lower(k: int, n: int, alpha: float) -> float:
    """One-sided exact lower bound of a binomial share: the p with P(X ≥ k | p) = alpha."""
    if k == 0:
        return 0.0
    low, high = 0.0, 1.0
    for _ in range(60):  # bisection; the tail grows with p
        middle = (low + high) / 2
        if binomial_tail_at_least(k, n, middle) < alpha:
            low = middle
        else:
            high = middle
    return low


def clopper_pearson_upper(k: int, n: int, alpha: float) -> float:
    """One-sided exact upper bound of a binomial share."""
    return 1.0 - clopper_pearson_lower(n - k, n, alpha)


def _verdicts(outcomes: str, name: str) -> list[int]:
    if set(outcomes) - {"0", "1"}:
        raise ValueError(f"{name} must be a string of per-pair verdicts '0'/'1'; got {outcomes[:20]!r}...")
    return [int(char) for char in outcomes]


def _discordant(challenger: str, reference: str) -> tuple[int, int]:
    mine, theirs = _verdicts(challenger, "challenger outcomes"), _verdicts(reference, "reference outcomes")
    if len(mine) != len(theirs) or not mine:
        raise ValueError(
            f"need the verdicts of both models on the same pairs; got {len(mine)} and {len(theirs)} verdicts"
        )
    b = sum(1 for x, y in zip(mine, theirs) if x and not y)
    c = sum(1 for x, y in zip(mine, theirs) if y and not x)
    return b, c


def compare_accuracy(challenger: str, reference: str, confidence: float) -> PairedComparison:
    """McNemar's exact test and exact one-sided bounds on the paired accuracy gain.

    Args:
        challenger, reference: per-pair verdicts ("0"/"1" per pair, same pair order).
        confidence: of each one-sided bound, in (0.5, 1).
    """
    b, c = _discordant(challenger, reference)
    pairs, discordant, alpha = len(challenger), b + c, 1.0 - confidence
    if discordant == 0:
        lower = upper = 0.0
    else:
        share = discordant / pairs
        lower = share * (2 * clopper_pearson_lower(b, discordant, alpha) - 1)
        upper = share * (2 * clopper_pearson_upper(b, discordant, alpha) - 1)
    return PairedComparison(
        pairs=pairs,
        challenger_only=b,
        reference_only=c,
        gain=(b - c) / pairs,
        gain_lower=lower,
        gain_upper=upper,
        p_better=binomial_tail_at_least(b, discordant, 0.5),
        p_worse=binomial_tail_at_least(c, discordant, 0.5),
        confidence=confidence,
        test="McNemar exact (one-sided), Clopper-Pearson bounds on the gain",
    )


def compare_length_controlled(
    challenger: str, reference: str, sides: str, confidence: float
) -> PairedComparison | None:
    """Paired gain in length-controlled accuracy (mean of the chosen-longer and chosen-shorter
    accuracies) with Wald bounds; None when either group has no pair (it is undefined)."""
    groups = []
    for side in (LONGER, SHORTER):
        keep = [i for i, value in enumerate(sides) if value == side]
        if not keep:
            return None
        groups.append(
            _discordant("".join(challenger[i] for i in keep), "".join(reference[i] for i in keep)) + (len(keep),)
        )
    gain = sum((b - c) / n for b, c, n in groups) / 2
    variance = sum((b + c - (b - c) ** 2 / n) / n**2 for b, c, n in groups) / 4
    spread = NormalDist().inv_cdf(confidence) * math.sqrt(max(variance, 0.0))
    p_worse = NormalDist().cdf(gain / math.sqrt(variance)) if variance > 0 else 0.5
    return PairedComparison(
        pairs=sum(n for _, _, n in groups),
        challenger_only=sum(b for b, _, _ in groups),
        reference_only=sum(c for _, c, _ in groups),
        gain=gain,
        gain_lower=gain - spread,
        gain_upper=gain + spread,
        p_better=1.0 - p_worse if variance > 0 else 0.5,
        p_worse=p_worse,
        confidence=confidence,
        test="stratified paired difference (chosen longer / shorter), normal bounds",
    )
