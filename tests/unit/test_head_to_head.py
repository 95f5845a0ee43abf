"""The judged head-to-head's statistics against hand-derived numbers, and its plumbing with fakes."""

import math

import pytest

from simpo_core.eval.generation import Generation
from simpo_core.eval.head_to_head import (
    head_to_head_block,
    judge_head_to_head,
    length_controlled_win_rate,
    sign_test,
)
from simpo_core.eval.settings import EvalSettings


def test_sign_test_by_hand():
    """9 wins, 1 loss: P(X >= 9 | n=10, 1/2) = (C(10,9) + C(10,10)) / 2^10 = 11/1024;
    P(X <= 9) = 1 - 1/1024. No win and no loss: nothing to test, both p are 1."""
    better, worse = sign_test(9, 1)
    assert better == pytest.approx(11 / 1024)
    assert worse == pytest.approx(1 - 1 / 1024)
    assert sign_test(0, 0) == (1.0, 1.0)
    # 3 wins, 3 losses: P(X >= 3 | 6) = (20 + 15 + 6 + 1) / 64 = 42/64, the same both ways
    assert sign_test(3, 3) == pytest.approx((42 / 64, 42 / 64))
    with pytest.raises(ValueError, match="counts"):
        sign_test(-1, 2)


def test_lc_win_rate_unpenalised_fit_reads_the_two_length_groups_by_hand():
    """Two groups of length difference, +10 (4 prompts: 3 wins) and -10 (2 prompts: 1 win): the
    feature takes the values ±t, so the unpenalised fit (ridge 0) matches each group's win rate:
    a + b t = logit(3/4) = ln 3 and a - b t = logit(1/2) = 0, hence a = ln(3)/2 and the rate at
    zero length difference is σ(ln √3) = √3 / (1 + √3) = 0.634, below the raw 4/6: part of the
    challenger's wins came with its longer answers."""
    fit = length_controlled_win_rate([1, 1, 1, 0, 1, 0], [10, 10, 10, 10, -10, -10], ridge=0.0)
    assert fit["lc_win_rate"] == pytest.approx(math.sqrt(3) / (1 + math.sqrt(3)), abs=1e-9)
    assert fit["intercept"] == pytest.approx(math.log(3) / 2, abs=1e-9)
    t = math.tanh(10 / fit["scale"])  # scale: the standard deviation of the differences, sqrt(800/9)
    assert fit["scale"] == pytest.approx(math.sqrt(800 / 9))
    assert fit["slope"] * t == pytest.approx(math.log(3) / 2, abs=1e-9)
    # A tie counts half: two ties in place of a win and a loss give the same fit.
    ties = length_controlled_win_rate([1, 1, 1, 0, 0.5, 0.5], [10, 10, 10, 10, -10, -10], ridge=0.0)
    assert ties["lc_win_rate"] == pytest.approx(fit["lc_win_rate"], abs=1e-9)


def test_lc_win_rate_degenerate_samples():
    # No length variation: the slope has nothing to explain and the rate is the raw win rate (2/3).
    assert length_controlled_win_rate([1, 0, 1], [3, 3, 3])["lc_win_rate"] == pytest.approx(2 / 3)
    # All ties: ½ whatever the lengths.
    assert length_controlled_win_rate([0.5] * 4, [1, 2, 3, 40])["lc_win_rate"] == pytest.approx(0.5)
    # Every prompt won: no finite fit; the rate stays 1 (length cannot explain outcomes that never vary).
    assert length_controlled_win_rate([1, 1], [5, -5])["lc_win_rate"] == 1.0
    assert length_controlled_win_rate([], []) is None
    with pytest.raises(ValueError, match="one outcome and one length difference"):
        length_controlled_win_rate([1, 0], [1])


def test_lc_win_rate_under_separation_is_finite_and_below_the_raw_rate():
    """Wins exactly where the challenger wrote more (8 longer, all won; 2 shorter, all lost): the
    unpenalised slope runs to infinity; the ridge keeps it finite and the length-controlled rate
    lies between ½ and the raw 0.8. A huge ridge pins the slope at 0: the raw rate comes back."""
    outcomes, lengths = [1] * 8 + [0] * 2, [5] * 8 + [-5] * 2
    fit = length_controlled_win_rate(outcomes, lengths)
    assert 0.5 < fit["lc_win_rate"] < 0.8 and 0 < fit["slope"] < 10
    pinned = length_controlled_win_rate(outcomes, lengths, ridge=1e9)
    assert pinned["lc_win_rate"] == pytest.approx(0.8, abs=1e-6)


def test_block_counts_skips_and_samples():
    prompts = [[{"role": "user", "content": f"q{i}"}] for i in range(5)]
    mine = ["long answer", "a", "b", "c", "same"]
    theirs = ["x", "bb", "b", "cc", "same"]
    # prompt 0 won, 1 lost, 2 tied, 3 not scored (None), 4 tied
    block = head_to_head_block(prompts, mine, theirs, [2.0, 0.0, 1.0, None, 1.0], [1.0, 1.0, 1.0, 0.5, 1.0], seed=0)
    assert (block["judged"], block["wins"], block["losses"], block["ties"], block["skipped"]) == (4, 1, 1, 2, 1)
    assert block["win_rate"] == pytest.approx((1 + 0.5 * 2) / 4)
    assert block["p_value"] == pytest.approx(0.75)  # P(X >= 1 | n=2, 1/2)
    assert block["p_value_worse"] == pytest.approx(0.75)
    assert len(block["samples"]) == 3 and all(sample["prompt"] != "q3" for sample in block["samples"])
    assert {"prompt", "challenger", "reference", "challenger_score", "reference_score"} == set(block["samples"][0])


def _fake_generator(model, tokenizer, prompts, *, do_sample, seed, **kwargs):
    """A 'model' is a function of (prompt text, seed): answers depend on both, as sampling does."""
    return [Generation(model(prompt[-1]["content"], seed), 1) for prompt in prompts]


def _pairs(count):
    return [{"prompt": f"question {i}", "chosen": "good", "rejected": "bad"} for i in range(count)]


def _length_judge(prompts, answers):
    return [float(len(answer)) for answer in answers]


def test_judge_head_to_head_uses_the_same_prompts_and_seeds_for_both_models():
    settings = EvalSettings(generation_samples=4, seed=3, judge="synthetic")
    seeds = []

    def challenger(prompt, seed):
        seeds.append(("challenger", prompt, seed))
        return "longer answer"

    def reference(prompt, seed):
        seeds.append(("reference", prompt, seed))
        return "short"

    block = judge_head_to_head(
        (challenger, None),
        (reference, None),
        _pairs(6),
        settings,
        reference_name="champion v2",
        do_sample=True,
        score_fn=_length_judge,
        generator=_fake_generator,
    )
    assert (block["prompts"], block["judged"], block["wins"]) == (4, 4, 4)
    assert block["reference"] == "champion v2" and block["decoding"].startswith("sampled")
    assert block["p_value"] == pytest.approx(1 / 16)  # P(X >= 4 | n=4, 1/2)
    asked = sorted((prompt, seed) for who, prompt, seed in seeds if who == "challenger")
    assert asked == sorted((prompt, seed) for who, prompt, seed in seeds if who == "reference")
    assert sorted(seed for _, seed in asked) == [3, 4, 5, 6]  # seed + index, one prompt per call


def test_judge_head_to_head_with_no_prompt_says_so():
    settings = EvalSettings(generation_samples=0, judge="synthetic")
    block = judge_head_to_head(
        (None, None), (None, None), _pairs(2), settings, reference_name="x", score_fn=_length_judge
    )
    assert block["judged"] == 0 and block["win_rate"] is None and block["lc_win_rate"] is None
    assert "generation_samples is 0" in block["note"]
