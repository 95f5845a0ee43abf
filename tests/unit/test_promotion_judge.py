"""`registry.gate_on`: the champion gate on the judged head-to-head of both models' answers."""

import pytest

from simpo_core.eval.head_to_head import sign_test
from simpo_core.gate.promotion import GateSettings, decide_promotion

PAIRS = 212
REFERENCE = "1" * 150 + "0" * 62
BETTER = "1" * 180 + "0" * 32  # 30 more pairs right: the accuracy rule promotes (p = 2^-30)


def block(outcomes):
    return {
        "pairs_sha256": "same",
        "pair_outcomes": outcomes,
        "pair_length_sides": "LS" * (PAIRS // 2),
        "generation": {"collapsed": False, "collapse_reasons": [], "greedy": {"samples": 16, "distinct_rate": 1.0}},
    }


# 16 prompts, literal figures. Sign test p by hand: P(X >= 2 | n=11, 1/2) = 1 - 12/2048 = 0.994;
# P(X >= 12 | n=13, 1/2) = (13 + 1) / 8192 = 0.00171 (and P(X <= 12) = 1 - 1/8192).
LOSES = {
    "judge": "reward-model",
    "decoding": "greedy",
    "judged": 16,
    "wins": 2,
    "losses": 9,
    "ties": 5,
    "win_rate": 4.5 / 16,
    "lc_win_rate": 0.27,
    "p_value": 1 - 12 / 2048,
    "p_value_worse": 67 / 2048,  # P(X <= 2 | n=11) = (1 + 11 + 55) / 2048 = 0.0327
    "samples": [{"prompt": "q", "challenger": "a", "reference": "b", "challenger_score": 0.1, "reference_score": 0.9}],
}
WINS = {
    **LOSES,
    "wins": 12,
    "losses": 1,
    "ties": 3,
    "win_rate": 13.5 / 16,
    "lc_win_rate": 0.81,
    "p_value": 14 / 8192,
    "p_value_worse": 1 - 1 / 8192,
}


def test_the_literal_blocks_carry_the_sign_test_numbers():
    assert sign_test(2, 9) == pytest.approx((LOSES["p_value"], LOSES["p_value_worse"]))
    assert sign_test(12, 1) == pytest.approx((WINS["p_value"], WINS["p_value_worse"]))


def decide(challenger_outcomes, head_to_head, **settings):
    return decide_promotion(
        block(challenger_outcomes), block(REFERENCE), "champion v1", GateSettings(**settings), None, head_to_head
    )


def test_a_challenger_that_loses_on_answers_is_refused_by_gate_on_judge_with_the_numbers():
    decision = decide(BETTER, LOSES, gate_on="judge")  # better reward accuracy does not help
    assert not decision.promoted
    assert (
        "answers not significantly better than those of champion v1 (sign test p=0.994, superiority needs < 0.05)"
        in (decision.reason)
    )
    assert "2 wins, 9 losses, 5 ties of 16 judged, win rate 0.281, LC win rate 0.270" in decision.reason
    assert decision.evidence["gate_on"] == "judge" and decision.evidence["head_to_head"]["wins"] == 2
    assert "samples" not in decision.evidence["head_to_head"]  # answers stay out of the registry tag


def test_a_challenger_that_wins_on_answers_is_promoted_by_gate_on_judge():
    decision = decide(REFERENCE, WINS, gate_on="judge")  # equal reward accuracy: the answers decide
    assert decision.promoted, decision.reason
    assert decision.reason.startswith("beats champion v1 (answers, superiority): ")
    assert "12 wins, 1 losses, 3 ties" in decision.reason and "p=0.00171" in decision.reason


def test_wins_that_length_alone_explains_do_not_promote():
    decision = decide(REFERENCE, {**WINS, "lc_win_rate": 0.48}, gate_on="judge")
    assert not decision.promoted and "only by length (LC win rate 0.480 <= 0.5)" in decision.reason


def test_both_needs_both_rules():
    assert decide(BETTER, WINS, gate_on="both").promoted
    answers_lose = decide(BETTER, LOSES, gate_on="both")
    assert not answers_lose.promoted and "answers not significantly better" in answers_lose.reason
    accuracy_equal = decide(REFERENCE, WINS, gate_on="both")
    assert not accuracy_equal.promoted and "accuracy gain over champion v1 not significant" in accuracy_equal.reason
    assert "answers not significantly" not in accuracy_equal.reason


def test_non_inferiority_on_answers_refuses_only_significantly_worse_answers():
    refused = decide(REFERENCE, LOSES, gate_on="judge", gate="non-inferiority")
    assert not refused.promoted and "answers significantly worse than those of champion v1 (sign test p=0.0327" in (
        refused.reason
    )
    ties = {**LOSES, "wins": 0, "losses": 0, "ties": 16, "win_rate": 0.5, "p_value": 1.0, "p_value_worse": 1.0}
    assert decide(REFERENCE, ties, gate_on="judge", gate="non-inferiority").promoted


def test_collapse_blocks_whatever_the_answers_say():
    collapsed = block(REFERENCE)
    collapsed["generation"] = {**collapsed["generation"], "collapsed": True, "collapse_reasons": ["repetition"]}
    decision = decide_promotion(collapsed, block(REFERENCE), "champion v1", GateSettings(gate_on="judge"), None, WINS)
    assert not decision.promoted and "challenger collapsed (repetition)" in decision.reason


def test_automatic_gate_on_is_accuracy_with_a_veto_on_worse_answers():
    settings = GateSettings()
    assert settings.gate_on is None
    assert settings.decides_on(judged=True) == ("both", "non-inferiority")
    assert settings.decides_on(judged=False) == ("reward_accuracy", None)
    assert decide(BETTER, None).promoted  # no judge: the accuracy rule alone, as before
    tied = {**LOSES, "wins": 1, "losses": 1, "ties": 14, "p_value": 0.75, "p_value_worse": 0.75, "lc_win_rate": 0.5}
    assert decide(BETTER, tied).promoted  # answers not significantly worse: the veto stays silent
    vetoed = decide(BETTER, LOSES)
    assert not vetoed.promoted and "answers significantly worse than those of champion v1" in vetoed.reason


def test_gate_on_judge_without_a_judged_head_to_head_refuses():
    nothing = decide(BETTER, None, gate_on="judge")
    assert not nothing.promoted and "registry.gate_on=judge needs the judged head-to-head" in nothing.reason
    unjudged = {"judge": "synthetic", "judged": 0, "note": "the judge scored none of the 16 answer pairs"}
    refused = decide(BETTER, unjudged, gate_on="both")
    assert not refused.promoted and "the judge scored none of the 16 answer pairs" in refused.reason
    assert decide(BETTER, unjudged).promoted  # automatic: nothing judged, the accuracy rule decides


def test_explicit_reward_accuracy_keeps_the_answers_out_of_the_decision():
    decision = decide(BETTER, LOSES, gate_on="reward_accuracy")
    assert decision.promoted, decision.reason
    assert decision.reason.startswith("beats champion v1 (superiority): ")
    assert "not gated on: registry.gate_on=reward_accuracy" in decision.reason


@pytest.mark.parametrize("value", ["judges", "accuracy", ""])
def test_gate_on_is_checked(value):
    with pytest.raises(ValueError, match="gate_on"):
        GateSettings(gate_on=value)
