import pytest

from simpo_core.promotion import decide_promotion


def block(accuracy, controlled, collapsed=False):
    return {
        "reward_accuracy": accuracy,
        "length_controlled_accuracy": controlled,
        "generation": {"collapsed": collapsed},
    }


def test_better_on_both_metrics_is_promoted():
    decision = decide_promotion(block(0.9, 0.85), block(0.5, 0.5), "starting model", margin=0.02)
    assert decision.promoted
    assert "reward_accuracy 0.900 vs 0.500" in decision.reason


def test_equal_accuracy_is_not_promoted():
    """Strictly better is required: 0.7 vs 0.7 with margin 0 is not a win."""
    decision = decide_promotion(block(0.7, 0.8), block(0.7, 0.6), "champion v1")
    assert not decision.promoted
    assert "reward_accuracy 0.700 does not beat champion v1's 0.700" in decision.reason


def test_length_exploiting_challenger_is_not_promoted():
    decision = decide_promotion(block(0.95, 0.5), block(0.6, 0.6), "champion v2")
    assert not decision.promoted
    assert "length_controlled_accuracy" in decision.reason


@pytest.mark.parametrize("margin, promoted", [(0.04, True), (0.05, False)])
def test_margin_is_exclusive(margin, promoted):
    assert decide_promotion(block(0.75, 0.75), block(0.70, 0.70), "x", margin).promoted is promoted


def test_collapsed_challenger_is_never_promoted():
    decision = decide_promotion(block(1.0, 1.0, collapsed=True), block(0.5, 0.5), "x")
    assert not decision.promoted and "collapsed" in decision.reason


def test_undefined_length_controlled_accuracy_gates_on_accuracy_alone():
    challenger = {"reward_accuracy": 0.9, "length_controlled_accuracy": None, "generation": None}
    decision = decide_promotion(challenger, block(0.5, None), "starting model")
    assert decision.promoted
    assert "length_controlled_accuracy undefined" in decision.reason
