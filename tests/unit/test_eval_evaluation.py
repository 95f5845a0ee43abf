import json

import pandas as pd
import pytest

from simpo_core.data.synthetic import CATEGORIES, generate_pairs, prompt_category, score_response
from simpo_core.errors import ConfigError, DataError
from simpo_core.eval.generation import Generation
from simpo_core.eval.heldout import (
    EvaluationResult,
    evaluate_heldout,
    evaluate_model,
    normalize_pairs,
    pairs_fingerprint,
)
from simpo_core.eval.settings import EvalSettings


class FakeScorer:
    """Stands in for compute_pair_logps. Model "length" prefers longer answers, model
    "rule" prefers the answer the synthetic rule prefers. Records the rows it saw."""

    def __init__(self):
        self.seen = {}

    def __call__(self, model, tokenizer, rows, *, max_length, max_prompt_length, batch_size):
        self.seen[model] = rows

        def logp(row, key):
            if model == "length":
                return len(row[key]) / 100
            return score_response(row["prompt"][-1]["content"], row[key]) - 2.0

        return {
            "chosen_logps": [logp(r, "chosen") for r in rows],
            "rejected_logps": [logp(r, "rejected") for r in rows],
            "chosen_lengths": [len(r["chosen"]) for r in rows],
            "rejected_lengths": [len(r["rejected"]) for r in rows],
        }


def fake_generator(model, tokenizer, prompts, *, do_sample, seed, **options):
    """ "length" loops on "Hi"; "rule" lists two words of the asked category."""
    if model == "length":
        return [Generation("Hi Hi Hi Hi Hi Hi Hi Hi", 24) for _ in prompts]
    answers = []
    for prompt in prompts:
        words = CATEGORIES[prompt_category(prompt[-1]["content"])]
        answers.append(Generation(f"{words[0]}, {words[1 if do_sample else 2]}.", 12))
    return answers


@pytest.fixture
def pairs():
    return pd.DataFrame(generate_pairs(120, length_bias=0.8, seed=11))


def run(pairs, scorer, out_dir=None, **settings):
    settings = EvalSettings(generation_samples=6, **settings)
    return evaluate_heldout(
        "length", "rule", None, pairs, settings, out_dir=out_dir, scorer=scorer, generator=fake_generator
    )


def test_base_and_trained_see_identical_pairs(pairs):
    scorer = FakeScorer()
    result = run(pairs, scorer)
    assert scorer.seen["length"] == scorer.seen["rule"] == normalize_pairs(pairs)
    heldout = result.heldout
    assert heldout["base"]["pairs_sha256"] == heldout["trained"]["pairs_sha256"] == heldout["pairs_sha256"]
    assert heldout["pairs"] == heldout["base"]["pairs"] == 120


def test_length_exploiter_vs_real_preference(pairs):
    heldout = run(pairs, FakeScorer()).heldout
    base, trained, delta = heldout["base"], heldout["trained"], heldout["delta"]
    assert base["reward_accuracy"] > 0.8 and base["length_controlled_accuracy"] == 0.5
    assert trained["reward_accuracy"] == trained["length_controlled_accuracy"] == 1.0
    assert delta["reward_accuracy"] == pytest.approx(1.0 - base["reward_accuracy"])
    low, high = delta["reward_accuracy_ci"]
    assert 0 < low <= delta["reward_accuracy"] <= high and delta["reward_accuracy_improved"] is True
    assert base["generation"]["collapsed"] is True and trained["generation"]["collapsed"] is False
    assert delta["generation"]["mean_length"] == 12 - 24


def test_loss_is_the_simpo_loss_of_the_log_probs():
    """One pair, β = 2, γ = 1: z = 2·(-1 - (-2)) - 1 = 1, loss = -logσ(1) = log(1 + e^-1)."""
    import math

    def scorer(model, tokenizer, rows, **options):
        return {"chosen_logps": [-1.0], "rejected_logps": [-2.0], "chosen_lengths": [3], "rejected_lengths": [4]}

    block = evaluate_model(
        "m", None, [{"prompt": "p", "chosen": "a", "rejected": "b"}], EvalSettings(generation_samples=0), scorer=scorer
    )
    assert block["loss"] == pytest.approx(math.log1p(math.exp(-1.0)))
    assert block["reward_margin"] == pytest.approx(2.0)
    assert block["generation"] is None


def test_synthetic_judge_win_rate(pairs):
    judge = run(pairs, FakeScorer()).heldout["judge"]
    assert judge["name"] == "synthetic"
    assert judge["judged"] == 12  # 6 prompts, greedy and sampled
    assert judge["win_rate"] == 1.0 and judge["wins"] == 12


def test_judge_none_and_unknown(pairs):
    assert run(pairs, FakeScorer(), judge="none").heldout["judge"] is None
    with pytest.raises(ConfigError, match="judge: Input should be 'synthetic', 'reward-model' or 'none'"):
        EvalSettings.from_values({"judge": "oracle"})


def test_report_files_and_json_contract(pairs, tmp_path):
    result = run(pairs, FakeScorer(), out_dir=tmp_path / "report")
    assert isinstance(result, EvaluationResult)
    assert set(result.paths) == {"json", "markdown", "margin_histogram", "accuracy_by_length"}
    assert all(path.stat().st_size > 0 for path in result.paths.values())
    assert result.paths["margin_histogram"].read_bytes()[:4] == b"\x89PNG"
    heldout = json.loads(result.paths["json"].read_text())["heldout"]
    for model in ("base", "trained"):
        for key in (
            "reward_accuracy",
            "reward_margin",
            "logps_chosen",
            "logps_rejected",
            "length_reward_correlation",
            "reward_accuracy_ci",
            "loss",
            "length_controlled_accuracy",
            "accuracy_chosen_longer",
            "accuracy_chosen_shorter",
            "generation",
        ):
            assert key in heldout[model], key
        assert set(heldout[model]["generation"]) >= {"mean_length", "repetition_rate", "empty_rate", "collapsed"}
    assert heldout["trained"]["reward_accuracy"] == 1.0
    assert "| reward accuracy (strict >) |" in result.markdown
    assert "Trained beats base" in result.markdown
    assert "collapsed" in result.markdown
    json.dumps(result.summary())  # serialisable as is


def test_flat_and_canonical_rows_are_the_same_pairs():
    flat = [{"prompt": "List some fruit words.", "chosen": "Apple.", "rejected": "Red.", "extra": 1}]
    canonical = [
        {"prompt": [{"role": "user", "content": "List some fruit words."}], "chosen": "Apple.", "rejected": "Red."}
    ]
    assert pairs_fingerprint(normalize_pairs(flat)) == pairs_fingerprint(normalize_pairs(canonical))


def test_bad_pairs_are_clear_errors():
    with pytest.raises(DataError, match="no held-out pairs"):
        normalize_pairs(pd.DataFrame(columns=["prompt", "chosen", "rejected"]))
    with pytest.raises(DataError, match="row 1 .*'chosen'"):
        normalize_pairs([{"prompt": "p", "chosen": "a", "rejected": "b"}, {"prompt": "p", "rejected": "b"}])


def test_single_model_markdown():
    from simpo_core.eval.report import render_model_markdown

    block = evaluate_model(
        "length",
        None,
        pd.DataFrame(generate_pairs(40, length_bias=1.0, seed=2)),
        EvalSettings(generation_samples=2),
        scorer=FakeScorer(),
        generator=fake_generator,
    )
    text = render_model_markdown(block)
    assert "| reward accuracy (strict >) | 1.000 |" in text
    assert "| length-controlled accuracy | – |" in text  # no pair with the chosen answer shorter
    assert "collapsed: repetition rate" in text


def test_one_settings_object_serves_both_entry_points(pairs):
    """The flow passes the same settings to evaluate_heldout and evaluate_model; the champion
    re-evaluated alone gets exactly the block it got beside a challenger."""
    settings = EvalSettings(
        max_length=64, max_prompt_length=32, batch_size=4, generation_samples=3, max_new_tokens=8, seed=1
    )
    heldout = evaluate_heldout(
        "length", "rule", None, pairs, settings, scorer=FakeScorer(), generator=fake_generator
    ).heldout
    alone = evaluate_model("rule", None, pairs, settings, scorer=FakeScorer(), generator=fake_generator)
    assert alone == heldout["trained"]
