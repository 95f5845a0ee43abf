import pytest

from simpo_core.data.synthetic import CATEGORIES, generate_pairs, prompt_category, score_response


def chosen_longer_fraction(rows):
    return sum(len(r["chosen"]) > len(r["rejected"]) for r in rows) / len(rows)


@pytest.mark.parametrize("bias, expected", [(1.0, 1.0), (-1.0, 0.0)])
def test_extreme_length_bias_is_exact(bias, expected):
    assert chosen_longer_fraction(generate_pairs(500, bias, seed=3)) == expected


def test_zero_length_bias_is_about_half():
    # 2000 fair coin flips: 0.5 +- 0.035 is more than three standard deviations.
    assert abs(chosen_longer_fraction(generate_pairs(2000, 0.0, seed=4)) - 0.5) < 0.035


def test_no_length_ties():
    assert all(len(r["chosen"]) != len(r["rejected"]) for r in generate_pairs(1000, 0.0, seed=5))


def test_same_seed_same_pairs_other_seed_other_pairs():
    assert generate_pairs(50, 0.3, seed=7) == generate_pairs(50, 0.3, seed=7)
    assert generate_pairs(50, 0.3, seed=7) != generate_pairs(50, 0.3, seed=8)


def test_rule_scores_chosen_right_and_rejected_wrong():
    rows = generate_pairs(300, 0.0, seed=9)
    assert all(score_response(r["prompt"], r["chosen"]) == 1.0 for r in rows)
    assert all(score_response(r["prompt"], r["rejected"]) == -1.0 for r in rows)


def test_every_prompt_names_one_category():
    assert all(prompt_category(r["prompt"]) in CATEGORIES for r in generate_pairs(300, 0.0, seed=10))


def test_score_response_hand_examples():
    prompt = "List some fruit words."
    assert score_response(prompt, "Apple, pear, dog, the.") == pytest.approx((2 - 1) / 4)
    assert score_response(prompt, "") == 0.0
    assert score_response("Tell me a joke.", "Apple.") == 0.0


@pytest.mark.parametrize("n, bias", [(-1, 0.0), (10, 1.5), (10, -1.01)])
def test_bad_arguments_are_refused(n, bias):
    with pytest.raises(ValueError):
        generate_pairs(n, bias)
