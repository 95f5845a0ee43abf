"""Held-out evaluation on the tiny model: real log-probs, real generation, real judges."""

import json
import subprocess
import sys

import pytest
import torch

from simpo_core.data.synthetic import generate_pairs, write_jsonl
from simpo_core.eval.generation import generate_responses
from simpo_core.eval.heldout import evaluate_heldout, evaluate_model
from simpo_core.eval.judges import build_judge
from simpo_core.eval.settings import EvalSettings
from simpo_core.models import load_model_and_tokenizer
from simpo_core.train.logps import compute_pair_logps

DEFAULTS = EvalSettings()
GENERATION = {"seed": 0, "max_prompt_length": DEFAULTS.max_prompt_length}
SCORING = {"max_length", "max_prompt_length", "batch_size"}


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    return load_model_and_tokenizer(str(tiny_model_dir))


@pytest.fixture(scope="module")
def reward_model_dir(tmp_path_factory, tiny_model_dir):
    """A tiny randomly initialised Llama reward model (one logit), saved like a hub model."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForSequenceClassification

    from simpo_core.tiny_model import TINY_ARCHITECTURE

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer), num_labels=1, pad_token_id=tokenizer.pad_token_id, **TINY_ARCHITECTURE
    )
    path = tmp_path_factory.mktemp("reward") / "rm"
    LlamaForSequenceClassification(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def prompts_of(rows):
    return [[{"role": "user", "content": row["prompt"]}] for row in rows]


def test_batched_left_padded_generation_matches_one_by_one(tiny):
    model, tokenizer = tiny
    prompts = [
        [{"role": "user", "content": "Hi"}],
        [{"role": "user", "content": "List some fruit words for a long poem."}],
    ]
    batched = generate_responses(
        model, tokenizer, prompts, do_sample=False, **GENERATION, max_new_tokens=10, batch_size=2
    )
    alone = [
        generate_responses(model, tokenizer, [p], do_sample=False, **GENERATION, max_new_tokens=10, batch_size=1)[0]
        for p in prompts
    ]
    assert batched == alone
    assert all(0 < g.num_tokens <= 10 for g in batched)


def test_sampling_is_seeded_and_leaves_the_global_rng_alone(tiny):
    model, tokenizer = tiny
    prompts = prompts_of(generate_pairs(3, seed=1))
    state = torch.random.get_rng_state()
    first = generate_responses(
        model, tokenizer, prompts, do_sample=True, seed=5, max_new_tokens=8, batch_size=8, max_prompt_length=256
    )
    assert torch.equal(torch.random.get_rng_state(), state)
    assert (
        generate_responses(
            model, tokenizer, prompts, do_sample=True, seed=5, max_new_tokens=8, batch_size=8, max_prompt_length=256
        )
        == first
    )
    assert (
        generate_responses(
            model, tokenizer, prompts, do_sample=True, seed=6, max_new_tokens=8, batch_size=8, max_prompt_length=256
        )
        != first
    )


def test_model_block_uses_the_training_log_probs(tiny):
    model, tokenizer = tiny
    rows = generate_pairs(12, seed=2)
    block = evaluate_model(model, tokenizer, rows, EvalSettings(generation_samples=2, max_new_tokens=6))
    reference = compute_pair_logps(model, tokenizer, rows, **DEFAULTS.model_dump(include=SCORING))
    assert block["logps_chosen"] == pytest.approx(reference["chosen_logps"].mean().item(), abs=1e-6)
    margins = 2.0 * (reference["chosen_logps"] - reference["rejected_logps"])
    assert block["reward_accuracy"] == pytest.approx((margins > 0).float().mean().item())
    assert block["generation"]["samples"] == 4


def test_reward_model_judge_ties_identical_models(tiny, reward_model_dir):
    """The same model as base and trained gives identical answers: every comparison is a tie."""
    model, tokenizer = tiny
    score = build_judge("reward-model", reward_model_path=str(reward_model_dir), batch_size=8, max_length=512)
    scores = score(prompts_of(generate_pairs(2, seed=3)), ["Apple, pear.", "Red, blue, green."])
    assert len(scores) == 2 and all(isinstance(s, float) for s in scores) and scores[0] != scores[1]
    result = evaluate_heldout(
        model,
        model,
        tokenizer,
        generate_pairs(10, seed=3),
        EvalSettings(
            judge="reward-model", reward_model_path=str(reward_model_dir), generation_samples=3, max_new_tokens=6
        ),
    )
    judge = result.heldout["judge"]
    assert judge["name"] == "reward-model" and judge["judged"] == 6
    assert judge["ties"] == 6 and judge["win_rate"] == 0.5
    assert judge["length_matched_pairs"] == 6 and judge["length_controlled_win_rate"] == 0.5
    assert result.heldout["delta"]["reward_accuracy"] == 0.0


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], capture_output=True, text=True)


def test_cli_evaluate_against_base_and_alone(tiny_model_dir, tmp_path):
    data = write_jsonl(generate_pairs(16, seed=4), tmp_path / "heldout.jsonl")
    common = [
        "--model",
        str(tiny_model_dir),
        "--data",
        str(data),
        "--generation-samples",
        "2",
        "--max-new-tokens",
        "6",
        "--json",
    ]
    result = run_cli("evaluate", *common, "--base", str(tiny_model_dir), "--out", str(tmp_path / "report"))
    assert result.returncode == 0, result.stderr
    heldout = json.loads(result.stdout.strip().splitlines()[-1])["heldout"]
    assert heldout["pairs"] == 16
    assert heldout["base"]["reward_accuracy"] == heldout["trained"]["reward_accuracy"]
    assert heldout["judge"]["win_rate"] == 0.5  # same model on both sides
    assert "| reward accuracy (strict >) |" in result.stderr
    assert {p.name for p in (tmp_path / "report").iterdir()} == {
        "evaluation.json",
        "evaluation.md",
        "margins.png",
        "accuracy_by_length.png",
    }

    alone = run_cli("evaluate", *common)
    assert alone.returncode == 0, alone.stderr
    summary = json.loads(alone.stdout.strip().splitlines()[-1])
    assert summary["heldout"]["base"] is None and summary["heldout"]["trained"]["pairs"] == 16


def test_cli_reward_model_judge_needs_a_path(tiny_model_dir, tmp_path):
    data = write_jsonl(generate_pairs(2), tmp_path / "d.jsonl")
    result = run_cli("evaluate", "--model", str(tiny_model_dir), "--data", str(data), "--judge", "reward-model")
    assert result.returncode == 1 and "judge 'reward-model' needs reward_model_path" in result.stderr


@pytest.mark.slow
def test_trained_tiny_beats_base_on_the_embedded_default(tiny_model_dir, tmp_path):
    """The from-scratch tiny model end to end: synthetic pairs, prompt-hash split, its preset.

    The preset's few hundred CPU steps (SimPO plus an SFT term) lift held-out accuracy from
    chance to >= 0.9. Trained must beat base by more than either model's 95% interval is wide,
    with a paired interval on the gain above 0, without leaning on length, and win the
    synthetic judge. (The SFT'd default `tiny` with SimPO alone: tests/integration/test_sft.py.)
    """
    from simpo_core.data.loading import load_preferences
    from simpo_core.data.split import split_holdout
    from simpo_core.train.config import SimPOConfig
    from simpo_core.train.trainer import SimPOTrainer

    train, heldout = split_holdout(load_preferences("synthetic").rows[["prompt", "chosen", "rejected"]], 0.1)
    base, tokenizer = load_model_and_tokenizer(str(tiny_model_dir))
    trained, _ = load_model_and_tokenizer(str(tiny_model_dir))
    config = SimPOConfig.preset("tiny-scratch", output_dir=tmp_path / "out", save_steps=0, eval_steps=0)
    SimPOTrainer(trained, config, tokenizer=tokenizer, train_dataset=train).train()

    result = evaluate_heldout(
        base,
        trained,
        tokenizer,
        heldout,
        EvalSettings(
            beta=config.beta,
            gamma=config.gamma,
            max_length=config.max_length,
            max_prompt_length=config.max_prompt_length,
        ),
        out_dir=tmp_path / "report",
    )
    h = result.heldout
    b, t, d, judge = h["base"], h["trained"], h["delta"], h["judge"]
    print(
        f"\n{h['pairs']} pairs; accuracy base {b['reward_accuracy']:.3f} {b['reward_accuracy_ci']} -> trained "
        f"{t['reward_accuracy']:.3f} {t['reward_accuracy_ci']}; delta {d['reward_accuracy']:+.3f} {d['reward_accuracy_ci']}; "
        f"length-controlled {b['length_controlled_accuracy']:.3f} -> {t['length_controlled_accuracy']:.3f}; "
        f"judge win rate {judge['win_rate']:.3f} {judge['win_rate_ci']} ({judge['wins']}/{judge['ties']}/{judge['losses']}); "
        f"repetition {b['generation']['repetition_rate']:.2f} -> {t['generation']['repetition_rate']:.2f}, "
        f"collapsed {b['generation']['collapsed']} -> {t['generation']['collapsed']}"
    )
    widest = max(hi - lo for lo, hi in (b["reward_accuracy_ci"], t["reward_accuracy_ci"]))
    assert 0.3 <= b["reward_accuracy"] <= 0.7 and t["reward_accuracy"] >= 0.9  # from chance to learned
    assert d["reward_accuracy"] > widest
    assert t["reward_accuracy_ci"][0] > b["reward_accuracy_ci"][1]
    assert d["reward_accuracy_improved"] and d["reward_accuracy_ci"][0] > 0
    assert t["length_controlled_accuracy"] >= 0.8  # the gain is not "longer wins"
    assert judge["win_rate"] > 0.5 and judge["wins"] > judge["losses"]
    assert result.paths["json"].exists()
