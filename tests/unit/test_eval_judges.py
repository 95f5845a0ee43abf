import pytest

from simpo_core.errors import ConfigError
from simpo_core.eval.judges import (
    available_judges,
    build_judge,
    compare_answers,
    length_matched,
    register_judge,
    win_rate,
)


def test_win_rate_by_hand():
    """trained vs base: 1>0 win, 1=1 tie, 1<2 loss, 5>3 win -> (2 + 0.5) / 4."""
    result = win_rate([0, 1, 2, 3], [1, 1, 1, 5], seed=0)
    assert result["win_rate"] == 0.625
    assert (result["wins"], result["ties"], result["losses"], result["judged"]) == (2, 1, 1, 4)
    low, high = result["win_rate_ci"]
    assert low <= 0.625 <= high


def test_win_rate_of_nothing_is_none():
    assert win_rate([], [], seed=0)["win_rate"] is None


def test_length_matched_within_twenty_percent():
    assert length_matched([10, 10, 10, 0], [12, 13, 8, 0]).tolist() == [True, False, True, True]


def test_compare_answers_length_controlled_and_skips():
    """Judge = answer length: it prefers the longer answer, so on length-matched pairs
    (where it cannot lean on length) its verdicts are what remain."""
    prompts = [[{"role": "user", "content": str(i)}] for i in range(4)]

    def by_length(prompts, answers):
        return [None if p[0]["content"] == "3" else float(len(a)) for p, a in zip(prompts, answers)]

    base = ["aaaa", "aaaaaaaaaa", "aaaaa", "a"]
    trained = ["aaaaaaaaaaaa", "aaaaaaaaa", "aaaaa", "aaaa"]
    result = compare_answers(by_length, prompts, base, trained, seed=0)
    assert result["judged"] == 3 and result["skipped"] == 1
    assert result["win_rate"] == pytest.approx((1 + 0 + 0.5) / 3)
    assert result["length_matched_pairs"] == 2  # pairs 1 (10 vs 9) and 2 (5 vs 5)
    assert result["length_controlled_win_rate"] == pytest.approx(0.25)
    assert "1 of 4" in result["note"]


def test_synthetic_judge_scores_the_rule():
    score = build_judge("synthetic")
    prompts = [[{"role": "user", "content": "List some fruit words."}]] * 2 + [
        [{"role": "user", "content": "Tell a joke."}]
    ]
    assert score(prompts, ["Apple, pear.", "Red, blue.", "Apple."]) == [1.0, -1.0, None]


def test_synthetic_judge_uses_the_last_user_turn():
    score = build_judge("synthetic")
    prompt = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "List some color words."}]
    assert score([prompt], ["Red, apple."]) == [0.0]


def test_compare_on_non_synthetic_prompts_is_skipped_with_a_note():
    prompts = [[{"role": "user", "content": "Tell a joke."}]] * 2
    result = compare_answers(build_judge("synthetic"), prompts, ["a", "b"], ["c", "d"], seed=0)
    assert result["win_rate"] is None and result["judged"] == 0
    assert "does not apply" in result["note"]


def test_registry(monkeypatch):
    import simpo_core.eval.judges as judges

    monkeypatch.setattr(judges, "_REGISTRY", dict(judges._REGISTRY))  # keep the added judge local
    assert {"synthetic", "reward-model"} <= set(available_judges())
    assert build_judge("none") is None
    with pytest.raises(ConfigError, match="unknown judge 'gpt'"):
        build_judge("gpt")
    register_judge("constant", lambda **options: lambda prompts, answers: [0.0] * len(answers))
    assert build_judge("constant", reward_model_path=None)([[]], ["x"]) == [0.0]


def test_reward_model_judge_needs_a_local_folder(tmp_path):
    limits = {"batch_size": 8, "max_length": 512}
    with pytest.raises(ConfigError, match="--reward-model-path PATH"):
        build_judge("reward-model", **limits)
    with pytest.raises(ConfigError, match="config.json"):
        build_judge("reward-model", reward_model_path=str(tmp_path), **limits)
