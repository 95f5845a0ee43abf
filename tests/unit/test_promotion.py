"""The champion gate on literal per-pair outcomes: noise cannot win, a real gain does."""

import pytest

from simpo_core.gate.paired_test import binomial_tail_at_least, clopper_pearson_lower, compare_accuracy
from simpo_core.gate.promotion import GateSettings, decide_promotion

PAIRS = 212
REFERENCE = "1" * 150 + "0" * 62  # 150 of 212 right
BALANCED = "LS" * (PAIRS // 2)  # half the pairs have the chosen answer longer


def flip(outcomes, count, to="1"):
    """`outcomes` with the first `count` verdicts that differ from `to` set to `to`."""
    chars, done = list(outcomes), 0
    for i, char in enumerate(chars):
        if done == count:
            break
        if char != to:
            chars[i], done = to, done + 1
    return "".join(chars)


def block(outcomes, sides=BALANCED, prompts=8, collapsed=False, distinct=1.0):
    greedy = {"samples": prompts, "distinct_rate": distinct}
    return {
        "pairs_sha256": "same",
        "pair_outcomes": outcomes,
        "pair_length_sides": sides,
        "generation": {
            "collapsed": collapsed,
            "collapse_reasons": ["repetition rate 0.60 > 0.5"] if collapsed else [],
            "greedy": greedy,
        },
    }


def decide(challenger, reference=None, judge=None, **settings):
    return decide_promotion(challenger, reference or block(REFERENCE), "champion v1", GateSettings(**settings), judge)


def test_exact_binomial_numbers_by_hand():
    """P(X >= 30 | n=30, 1/2) = 2^-30; P(X >= 1 | n=1, 1/2) = 1/2; the one-sided 95 % lower
    bound of 1 success in 1 trial is the p with P(X >= 1 | p) = p = 0.05."""
    assert binomial_tail_at_least(30, 30, 0.5) == pytest.approx(2**-30)
    assert binomial_tail_at_least(1, 1, 0.5) == pytest.approx(0.5)
    assert clopper_pearson_lower(1, 1, 0.05) == pytest.approx(0.05, abs=1e-9)
    one_pair = compare_accuracy(flip(REFERENCE, 1), REFERENCE, 0.95)
    # b=1, c=0: gain 1/212; lower bound (1/212)(2 * 0.05 - 1) = -0.9/212
    assert (one_pair.challenger_only, one_pair.reference_only) == (1, 0)
    assert one_pair.gain_lower == pytest.approx(-0.9 / PAIRS, abs=1e-9)
    assert one_pair.p_better == pytest.approx(0.5)


def test_one_more_pair_in_212_is_noise_and_is_not_promoted():
    decision = decide(block(flip(REFERENCE, 1)))
    assert not decision.promoted
    assert "accuracy gain over champion v1 not significant" in decision.reason
    assert "McNemar exact p=0.5" in decision.reason


def test_thirty_more_pairs_is_promoted():
    decision = decide(block(flip(REFERENCE, 30)))
    assert decision.promoted, decision.reason
    assert decision.evidence["accuracy"]["challenger_only"] == 30
    assert decision.evidence["accuracy"]["p_better"] == pytest.approx(2**-30)


def test_the_reason_names_each_one_sided_bound_by_the_rule_that_reads_it():
    """Two one-sided bounds, not one interval: each is named with the threshold it is held to."""
    reason = decide(block(flip(REFERENCE, 30)), max_loss=0.03).reason
    accuracy = compare_accuracy(flip(REFERENCE, 30), REFERENCE, 0.95)
    assert f"lower 95% bound {accuracy.gain_lower:+.3f} (superiority needs > 0.000)" in reason
    assert f"upper 95% bound {accuracy.gain_upper:+.3f} (non-inferiority refuses below -0.030)" in reason
    assert ".." not in reason  # nothing reads as an interval


def test_min_gain_is_on_the_lower_bound():
    assert not decide(block(flip(REFERENCE, 30)), min_gain=0.2).promoted  # gain 0.14 cannot clear 0.2


def test_non_inferiority_promotes_an_equal_challenger_and_refuses_a_worse_one():
    assert decide(block(REFERENCE), gate="non-inferiority").promoted
    worse = decide(block(flip(REFERENCE, 30, to="0")), gate="non-inferiority")
    assert not worse.promoted and "significantly worse than champion v1" in worse.reason


def test_better_accuracy_with_significantly_worse_length_control_is_refused():
    # 180 chosen-longer pairs (reference right on 100) and 32 chosen-shorter (reference right on all).
    sides = "L" * 180 + "S" * 32
    reference = "1" * 100 + "0" * 80 + "1" * 32
    challenger = "1" * 160 + "0" * 20 + "0" * 32  # +60 on longer, -32 on shorter: raw gain +28
    decision = decide(block(challenger, sides), block(reference, sides))
    assert decision.evidence["accuracy"]["gain"] == pytest.approx(28 / PAIRS)
    assert decision.evidence["length_controlled"]["gain"] == pytest.approx((60 / 180 - 1) / 2)
    assert not decision.promoted and "length-controlled accuracy significantly worse" in decision.reason


def test_undefined_length_control_refuses_unless_allowed_or_judged():
    one_sided = "L" * PAIRS
    challenger, reference = block(flip(REFERENCE, 30), one_sided), block(REFERENCE, one_sided)
    refused = decide(challenger, reference)
    assert not refused.promoted and "length-controlled accuracy undefined" in refused.reason
    assert "registry.allow_undefined_length_control" in refused.reason
    allowed = decide(challenger, reference, allow_undefined_length_control=True)
    assert allowed.promoted and "allowed by registry.allow_undefined_length_control" in allowed.reason
    judge = {"name": "synthetic", "length_controlled_win_rate": 0.7, "length_controlled_win_rate_ci": (0.55, 0.85)}
    assert decide(challenger, reference, judge=judge).promoted


def test_too_few_generation_samples_refuse_rather_than_skip():
    decision = decide(block(flip(REFERENCE, 30), prompts=2))
    assert not decision.promoted
    assert "only 2 held-out prompts answered, fewer than registry.min_generation_samples=8" in decision.reason
    no_check = block(flip(REFERENCE, 30))
    no_check["generation"] = None
    assert "only 0 held-out prompts answered" in decide(no_check).reason


@pytest.mark.parametrize(
    "collapse, expected",
    [({"collapsed": True}, "repetition rate 0.60 > 0.5"), ({"distinct": 0.25}, "greedy distinct-answer rate 0.25")],
)
def test_collapse_always_blocks(collapse, expected):
    decision = decide(block(flip(REFERENCE, 60), **collapse), gate="non-inferiority")
    assert not decision.promoted and expected in decision.reason


def test_a_judge_significantly_below_half_blocks():
    judge = {"name": "synthetic", "length_controlled_win_rate": 0.2, "length_controlled_win_rate_ci": (0.1, 0.35)}
    decision = decide(block(flip(REFERENCE, 30)), judge=judge)
    assert not decision.promoted and "significantly below 0.5" in decision.reason


def test_blocks_from_other_pairs_are_refused():
    other = block(REFERENCE)
    other["pairs_sha256"] = "different"
    assert "evaluated on other held-out pairs" in decide(block(flip(REFERENCE, 30)), other).reason
