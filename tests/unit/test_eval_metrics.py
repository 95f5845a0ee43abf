import math

import numpy as np
import pytest

from simpo_core.data.synthetic import generate_pairs
from simpo_core.eval.metrics import (
    accuracy_by_length_bucket,
    bootstrap_ci,
    length_reward_correlation,
    preference_metrics,
    spearman,
)


def test_metrics_match_hand_derived_numbers():
    """β = 2: chosen rewards [-2, -4, -3, -6], rejected [-4, -2, -3, -5].

    margins [2, -2, 0, -1] -> correct [yes, no, no (tie), no]: accuracy 1/4,
    margin -1/4; mean logps -7.5/4 and -7/4. Lengths: pair 0 chosen longer (correct),
    pairs 1 and 3 chosen shorter (both wrong), pair 2 equal: 1.0, 0.0 -> controlled 0.5.
    """
    block = preference_metrics(
        [-1.0, -2.0, -1.5, -3.0],
        [-2.0, -1.0, -1.5, -2.5],
        [10, 5, 8, 3],
        [5, 10, 8, 6],
        beta=2.0,
        losses=[1.0, 2.0, 3.0, 4.0],
        seed=0,
    )
    assert block["pairs"] == 4
    assert block["reward_accuracy"] == 0.25
    assert block["reward_margin"] == pytest.approx(-0.25)
    assert block["logps_chosen"] == pytest.approx(-1.875)
    assert block["logps_rejected"] == pytest.approx(-1.75)
    assert block["rewards_chosen"] == pytest.approx(-3.75)
    assert block["loss"] == pytest.approx(2.5)
    assert block["accuracy_chosen_longer"] == 1.0
    assert block["accuracy_chosen_shorter"] == 0.0
    assert block["length_controlled_accuracy"] == 0.5
    assert (block["pairs_chosen_longer"], block["pairs_chosen_shorter"], block["pairs_equal_length"]) == (1, 2, 1)


def test_ties_count_as_wrong():
    block = preference_metrics([-1.0, -1.0], [-1.0, -1.0], [3, 3], [4, 4], beta=2.0, seed=0)
    assert block["reward_accuracy"] == 0.0
    assert block["reward_accuracy_ci"] == (0.0, 0.0)


def test_length_only_scorer_is_exposed_on_biased_data():
    """A scorer whose log-prob is the response length: right whenever chosen is longer."""
    rows = generate_pairs(400, length_bias=0.8, seed=3)
    chosen_len = np.array([len(r["chosen"]) for r in rows], dtype=float)
    rejected_len = np.array([len(r["rejected"]) for r in rows], dtype=float)
    block = preference_metrics(chosen_len / 100, rejected_len / 100, chosen_len, rejected_len, beta=2.0, seed=0)
    assert block["reward_accuracy"] > 0.85  # raw accuracy rewards the bias ...
    assert block["length_controlled_accuracy"] == 0.5  # ... the controlled one does not
    assert block["accuracy_chosen_longer"] == 1.0 and block["accuracy_chosen_shorter"] == 0.0
    assert block["length_reward_correlation"] == pytest.approx(1.0)


def test_preference_scorer_is_not_penalised_by_length_control():
    rows = generate_pairs(200, length_bias=0.8, seed=4)
    chosen_len = np.array([len(r["chosen"]) for r in rows], dtype=float)
    rejected_len = np.array([len(r["rejected"]) for r in rows], dtype=float)
    block = preference_metrics(np.full(200, -1.0), np.full(200, -2.0), chosen_len, rejected_len, beta=2.0, seed=0)
    assert block["reward_accuracy"] == block["length_controlled_accuracy"] == 1.0


def test_bootstrap_interval_contains_true_accuracy_in_known_case():
    correct = np.array([1.0] * 140 + [0.0] * 60)  # accuracy exactly 0.7, N = 200
    low, high = bootstrap_ci(correct, seed=0)
    assert low < 0.7 < high
    # normal approximation: half-width 1.96 * sqrt(0.7 * 0.3 / 200) = 0.0635
    assert (high - low) / 2 == pytest.approx(0.0635, abs=0.01)
    assert bootstrap_ci(correct, seed=0) == (low, high)  # deterministic


def test_bootstrap_interval_covers_about_95_percent():
    rng = np.random.default_rng(7)
    covered = 0
    for trial in range(200):
        sample = (rng.random(150) < 0.6).astype(float)
        low, high = bootstrap_ci(sample, n_resamples=500, seed=trial)
        covered += low <= 0.6 <= high
    assert 0.88 <= covered / 200 <= 0.99


def test_bootstrap_of_empty_is_nan():
    assert all(math.isnan(v) for v in bootstrap_ci(np.array([]), seed=0))


def test_spearman_constant_is_none_and_rank_based():
    assert spearman(np.array([1.0, 1.0, 1.0]), np.array([1.0, 2.0, 3.0])) is None
    # monotone but not linear: Spearman 1, Pearson would not be
    assert spearman(np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.0, 10.0, 100.0, 1000.0])) == pytest.approx(1.0)


def test_length_reward_correlation_uses_all_responses():
    """Responses (length, reward): chosen (1, 4), (3, 2); rejected (2, 3), (4, 1) -> ranks reversed."""
    value = length_reward_correlation(
        np.array([4.0, 2.0]), np.array([3.0, 1.0]), np.array([1.0, 3.0]), np.array([2.0, 4.0])
    )
    assert value == pytest.approx(-1.0)


def test_accuracy_by_length_bucket():
    """Relative differences: -0.5, -0.1, 0, +0.1, +0.5 -> one pair per bucket."""
    chosen = np.array([5.0, 9.0, 10.0, 10.0, 10.0])
    rejected = np.array([10.0, 10.0, 10.0, 9.0, 5.0])
    correct = np.array([False, False, True, True, True])
    buckets = accuracy_by_length_bucket(correct, chosen, rejected)
    assert [b["bucket"] for b in buckets] == [
        "chosen shorter by >25%",
        "chosen shorter by ≤25%",
        "equal length",
        "chosen longer by ≤25%",
        "chosen longer by >25%",
    ]
    assert [b["pairs"] for b in buckets] == [1, 1, 1, 1, 1]
    assert [b["accuracy"] for b in buckets] == [0.0, 0.0, 1.0, 1.0, 1.0]


def test_empty_bucket_has_no_accuracy():
    buckets = accuracy_by_length_bucket(np.array([True]), np.array([10.0]), np.array([5.0]))
    assert buckets[0] == {"bucket": "chosen shorter by >25%", "pairs": 0, "accuracy": None}
    assert len(buckets) == 4  # no equal-length pairs, no equal bucket


def test_mismatched_shapes_are_a_clear_error():
    with pytest.raises(ValueError, match="same non-zero number of pairs"):
        preference_metrics([-1.0, -2.0], [-1.0], [1, 2], [1, 2], beta=2.0, seed=0)
    with pytest.raises(ValueError, match="same non-zero number of pairs"):
        preference_metrics([], [], [], [], beta=2.0, seed=0)
    with pytest.raises(ValueError, match=r"shape \(N,\)"):
        preference_metrics([[-1.0]], [[-1.0]], [[1]], [[1]], beta=2.0, seed=0)


def test_accepts_torch_tensors():
    import torch

    block = preference_metrics(
        torch.tensor([-1.0, -1.0]),
        torch.tensor([-2.0, -0.5]),
        torch.tensor([3, 3]),
        torch.tensor([4, 2]),
        beta=1.0,
        seed=0,
    )
    assert block["reward_accuracy"] == 0.5


def test_delta_is_trained_minus_base_with_a_paired_interval():
    """Per-pair verdicts base [1, 0, 0, 1], trained [1, 1, 1, 0]: gain 0.75 - 0.5 = 0.25;
    paired differences [0, 1, 1, -1] resample to means between -1 and 1."""
    from simpo_core.eval.metrics import delta_metrics

    base = {
        key: 0.5
        for key in (
            "reward_accuracy",
            "reward_margin",
            "logps_chosen",
            "logps_rejected",
            "loss",
            "accuracy_chosen_longer",
            "accuracy_chosen_shorter",
            "length_reward_correlation",
        )
    }
    trained = {**base, "reward_accuracy": 0.75, "loss": 0.25}
    base["length_controlled_accuracy"], trained["length_controlled_accuracy"] = None, 0.6
    delta = delta_metrics(base, trained, np.array([1, 0, 0, 1], bool), np.array([1, 1, 1, 0], bool), seed=0)
    assert delta["reward_accuracy"] == 0.25 and delta["loss"] == -0.25
    assert delta["length_controlled_accuracy"] is None
    low, high = delta["reward_accuracy_ci"]
    assert -1 <= low < 0 < 0.25 < high <= 1
    assert delta["reward_accuracy_improved"] is False  # four pairs cannot show a gain
    assert delta["generation"] is None


def test_the_length_controlled_figures_say_how_many_pairs_they_rest_on():
    block = preference_metrics([-1.0, -2.0, -1.5], [-2.0, -1.0, -1.5], [10, 5, 8], [5, 10, 8], beta=2.0, seed=0)
    assert block["length_controlled_pairs"] == 2  # one longer, one shorter; the equal pair is left out
    assert block["length_sides_measured"] == "after truncation"  # lengths as given by the scorer
    measured = preference_metrics([-1.0], [-2.0], [3], [2], beta=2.0, seed=0, lengths_measured="before truncation")
    assert measured["length_sides_measured"] == "before truncation"


def cut_pairs():
    """Three pairs whose answers are all cut to the same room by max_length 48 / max_prompt_length 24
    (tiny tokenizer: a byte per token), though their whole lengths differ."""
    return [
        {"prompt": "q0", "chosen": "c" * 200, "rejected": "r" * 100},  # chosen longer
        {"prompt": "q1", "chosen": "c" * 90, "rejected": "r" * 300},  # chosen shorter
        {"prompt": "q2", "chosen": "c" * 150, "rejected": "r" * 150},  # equal
    ]


def test_length_sides_are_measured_on_the_whole_answers():
    from simpo_core.eval.heldout import evaluate_model
    from simpo_core.eval.settings import EvalSettings
    from simpo_core.tiny_model import build_tiny_model, build_tiny_tokenizer
    from simpo_core.train.logps import compute_pair_logps

    tokenizer = build_tiny_tokenizer()
    model = build_tiny_model(len(tokenizer))
    settings = EvalSettings(generation_samples=0, judge="none", max_length=48, max_prompt_length=24, batch_size=4)
    scored = compute_pair_logps(model, tokenizer, cut_pairs(), max_length=48, max_prompt_length=24, batch_size=4)
    assert scored["chosen_lengths"].tolist() == scored["rejected_lengths"].tolist()  # truncated: all look equal
    block = evaluate_model(model, tokenizer, cut_pairs(), settings)
    assert block["pair_length_sides"] == "LSE"
    assert (block["pairs_chosen_longer"], block["pairs_chosen_shorter"], block["pairs_equal_length"]) == (1, 1, 1)
    assert block["length_controlled_pairs"] == 2 and block["length_controlled_accuracy"] is not None
    assert block["length_sides_measured"] == "before truncation" and block["truncated_pairs"] == 3
    from simpo_core.eval.report import render_model_markdown

    assert (
        "rest on 2 pairs (1 chosen longer, 1 chosen shorter; 1 of equal length left out), lengths measured "
        "before truncation; 3 pairs had an answer cut to fit max_length when scored." in render_model_markdown(block)
    )
