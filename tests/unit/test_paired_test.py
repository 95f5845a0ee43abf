"""Length-controlled paired bounds on literal counts, with the expected figures worked by hand.

Notation: a group holds the pairs whose chosen answer is longer (L) or shorter (S); in it `b`
pairs the challenger alone gets right, `c` the reference alone, `N` pairs in all. At 95 %
one-sided confidence, alpha = 0.05 and 0.05^(1/3) = exp(ln 0.05 / 3) = 0.3684031.
"""

import math

import pytest

from simpo_core.gate.paired_test import compare_length_controlled, sign_flip_p_at_most
from simpo_core.gate.promotion import GateSettings, decide_promotion

CUBE_ROOT = 0.05 ** (1 / 3)  # 0.3684031


def outcomes(groups):
    """(challenger, reference, sides) with `(b, c, N)` per group, L then S."""
    challenger = reference = sides = ""
    for side, (b, c, pairs) in zip("LS", groups):
        challenger += "1" * b + "0" * c + "1" * (pairs - b - c)
        reference += "0" * b + "1" * c + "1" * (pairs - b - c)
        sides += side * pairs
    return challenger, reference, sides


def test_three_lost_pairs_in_one_group_give_an_exact_width_not_a_point():
    """L: b=0, c=3, N=3; S: 5 pairs, none discordant. Gain (−1 + 0) / 2 = −0.5.
    Given 3 discordant pairs, the exact upper bound of the share won is the p with
    P(X ≤ 0 | 3, p) = (1 − p)^3 = 0.05: p = 1 − 0.3684031 = 0.6315969, so L's gain is at most
    2p − 1 = 0.2631938 and the mean at most −0.5 + (0.2631938 + 1) / 2 = 0.1315969. Losing
    every discordant pair is the lowest gain these counts allow: the lower bound is −0.5.
    p (worse) = P(X ≤ 0 | 3, ½) = 1/8; p (better) = P(X ≥ 0) = 1."""
    result = compare_length_controlled(*outcomes([(0, 3, 3), (0, 0, 5)]), 0.95)
    assert result.gain == pytest.approx(-0.5)
    assert result.gain_upper == pytest.approx(0.5 - CUBE_ROOT, abs=1e-9)
    assert result.gain_lower == pytest.approx(-0.5, abs=1e-9)
    assert (result.p_worse, result.p_better) == (pytest.approx(0.125), pytest.approx(1.0))


def test_a_second_discordant_group_widens_both_sides():
    """L: b=0, c=3, N=3 (gain −1, bounds −1..0.2631938 as above); S: b=1, c=0, N=4 (gain 0.25:
    one discordant pair of 4; the lower bound of the share won is the p with P(X ≥ 1 | 1, p) = p
    = 0.05, so S's gain is at least 0.25 × (2 × 0.05 − 1) = −0.225, at most 0.25).
    Mean gain −0.375; lower −0.375 − √(0² + 0.475²) / 2 = −0.6125; upper
    −0.375 + √(1.2631938² + 0²) / 2 = 0.2565969. Sign flips: L's term (2k − 3)/3 is −1, −⅓, ⅓, 1
    with chances ⅛, ⅜, ⅜, ⅛ and S's (2k − 1)/4 is ±¼ evenly; the sum is at most the observed
    −0.75 only when L's is −1, chance ⅛; it is below −0.75 only at (−1, −¼), chance 1/16, so
    p (better) = 1 − 1/16."""
    result = compare_length_controlled(*outcomes([(0, 3, 3), (1, 0, 4)]), 0.95)
    assert result.gain == pytest.approx(-0.375)
    assert result.gain_lower == pytest.approx(-0.6125, abs=1e-9)
    assert result.gain_upper == pytest.approx(-0.375 + (1 - CUBE_ROOT), abs=1e-9)
    assert (result.p_worse, result.p_better) == (pytest.approx(0.125), pytest.approx(0.9375))


def test_both_groups_lost_combine_their_widths():
    """Both groups b=0, c=3, N=3: gain −1; each group's upper distance is 2 × 0.6315969, so the
    upper bound is −1 + √2 × 0.6315969 = −0.1067949: still significantly worse. p (worse) =
    P(both groups lose all 3) = 2^−6."""
    result = compare_length_controlled(*outcomes([(0, 3, 3), (0, 3, 3)]), 0.95)
    assert result.gain_upper == pytest.approx(-1 + math.sqrt(2) * (1 - CUBE_ROOT), abs=1e-9)
    assert result.p_worse == pytest.approx(2**-6)


def test_large_groups_agree_with_the_normal_bounds():
    """N=400 per group, b=60, c=30 in each: gain 30/400 = 0.075. Wald variance of the mean:
    2 × (90 − 30²/400) / 400² / 4 = 2.7422e-4, so the 95 % bounds are 0.075 ∓ 1.6448536 ×
    0.0165595 = 0.0477621..0.1022379; the exact-per-group bounds lie within 0.005 of them."""
    result = compare_length_controlled(*outcomes([(60, 30, 400), (60, 30, 400)]), 0.95)
    spread = 1.6448536 * math.sqrt(2 * (90 - 30**2 / 400) / 400**2 / 4)
    assert result.gain == pytest.approx(0.075)
    assert result.gain_lower == pytest.approx(0.075 - spread, abs=0.005)
    assert result.gain_upper == pytest.approx(0.075 + spread, abs=0.005)
    assert result.p_better < 1e-4


def test_sign_flip_p_with_one_discordant_group_is_mcnemar():
    """Only L has discordant pairs (b=2, c=8): p (worse) = P(X ≤ 2 | 10, ½) = 56/1024."""
    assert sign_flip_p_at_most([(2, 8, 40), (0, 0, 7)]) == pytest.approx(56 / 1024)


def test_three_lost_pairs_do_not_block_the_gate():
    """8 pairs (3 L, 5 S), the challenger loses the 3 L pairs: the length-controlled upper
    bound is 0.13 > 0 (exact p ⅛), so a non-inferiority gate with a loose loss margin
    promotes; the accuracy gain's upper bound (3/8) × 0.2631938 = 0.0987 is above −0.5."""
    challenger, reference, sides = outcomes([(0, 3, 3), (0, 0, 5)])

    def block(verdicts):
        greedy = {"samples": 8, "distinct_rate": 1.0}
        return {
            "pairs_sha256": "same",
            "pair_outcomes": verdicts,
            "pair_length_sides": sides,
            "generation": {"collapsed": False, "collapse_reasons": [], "greedy": greedy},
        }

    settings = GateSettings(gate="non-inferiority", max_loss=0.5)
    decision = decide_promotion(block(challenger), block(reference), "champion v1", settings)
    assert decision.promoted, decision.reason
