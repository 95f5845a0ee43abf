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
and on those where it is shorter; its paired gain is the mean of the two groups' gains
`(b_g − c_g) / N_g`. Each group gets the exact bounds above (Clopper–Pearson given its
discordant count), and the two are combined by MOVER (Zou & Donner, 2008: a group's distance
from its estimate to its bound stands in for z × its standard error, and the mean's distance
is half the root sum of squares of the two). With large groups this is the normal (Wald)
bound; with a handful of discordant pairs it keeps the exact width where the Wald variance
`b + c − (b − c)² / N` drops to 0 (three lost pairs out of three: Wald says the gain is
certainly −1, the exact one-sided p is ⅛). The p-values are the exact sign-flip test of
the same gain: under "equally good" each discordant pair's winner is a fair coin in both
groups, and p is the chance of a mean gain at least as extreme. When only one group has
discordant pairs, bound and p are exactly McNemar's on that group. Standard library only.
"""

import math
from dataclasses import asdict, dataclass
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


def _group(challenger: str, reference: str, sides: str, side: str) -> tuple[int, int, int] | None:
    """(b, c, N) of the pairs whose chosen answer is on `side`; None when there are none."""
    keep = [i for i, value in enumerate(sides) if value == side]
    if not keep:
        return None
    b, c = _discordant("".join(challenger[i] for i in keep), "".join(reference[i] for i in keep))
    return b, c, len(keep)


def _group_bounds(b: int, c: int, pairs: int, alpha: float) -> tuple[float, float, float]:
    """(gain, lower, upper) of one group's paired gain `(b − c) / pairs`, exact given `b + c`."""
    discordant = b + c
    if discordant == 0:
        return 0.0, 0.0, 0.0  # no pair tells the models apart: given the counts the gain is 0
    share = discordant / pairs
    lower = share * (2 * clopper_pearson_lower(b, discordant, alpha) - 1)
    upper = share * (2 * clopper_pearson_upper(b, discordant, alpha) - 1)
    return (b - c) / pairs, lower, upper


def _fair_coin_cdf(n: int) -> list[float]:
    """P(X ≤ k) for X ~ Binomial(n, ½), k = 0..n."""
    total, cdf = 0.0, []
    for k in range(n + 1):
        total += math.exp(_log_binomial_pmf(k, n, 0.5))
        cdf.append(min(total, 1.0))
    return cdf


def sign_flip_p_at_most(groups: list[tuple[int, int, int]]) -> float:
    """Exact P(T ≤ observed T) for `T = Σ (b_g − c_g) / N_g` over two groups `(b, c, N)` when
    each discordant pair's winner is a fair coin: the one-sided p of "the challenger is worse"."""
    (b1, c1, n1), (b2, c2, n2) = groups
    m1, m2 = b1 + c1, b2 + c2
    observed = (b1 - c1) * n2 + (b2 - c2) * n1  # T × N1 × N2: integers, so ties compare exactly
    cdf2 = _fair_coin_cdf(m2)
    total = 0.0
    for k1 in range(m1 + 1):
        # The largest k2 with (2 k1 − m1) N2 + (2 k2 − m2) N1 ≤ observed (floor division).
        top = (observed - (2 * k1 - m1) * n2 + m2 * n1) // (2 * n1)
        if top >= 0:
            total += math.exp(_log_binomial_pmf(k1, m1, 0.5)) * cdf2[min(top, m2)]
    return min(total, 1.0)


def compare_length_controlled(
    challenger: str, reference: str, sides: str, confidence: float
) -> PairedComparison | None:
    """Paired gain in length-controlled accuracy (mean of the chosen-longer and chosen-shorter
    accuracies): exact bounds per group combined by MOVER, exact sign-flip p-values; None when
    either group has no pair (it is undefined)."""
    groups = [_group(challenger, reference, sides, side) for side in (LONGER, SHORTER)]
    if groups[0] is None or groups[1] is None:
        return None
    (gain1, low1, up1), (gain2, low2, up2) = (_group_bounds(b, c, n, 1.0 - confidence) for b, c, n in groups)
    gain = (gain1 + gain2) / 2
    return PairedComparison(
        pairs=sum(n for _, _, n in groups),
        challenger_only=sum(b for b, _, _ in groups),
        reference_only=sum(c for _, c, _ in groups),
        gain=gain,
        gain_lower=gain - math.hypot(gain1 - low1, gain2 - low2) / 2,
        gain_upper=gain + math.hypot(up1 - gain1, up2 - gain2) / 2,
        p_better=sign_flip_p_at_most([(c, b, n) for b, c, n in groups]),  # -T has the law of T
        p_worse=sign_flip_p_at_most(groups),
        confidence=confidence,
        test="stratified paired difference (chosen longer / shorter): exact bounds per group combined "
        "by MOVER, exact sign-flip p",
    )
