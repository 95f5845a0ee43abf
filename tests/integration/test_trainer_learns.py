"""The from-scratch tiny model learns: a few hundred CPU steps of the `tiny-scratch` preset
(SimPO plus an SFT term) on synthetic pairs lift held-out reward accuracy from chance to >= 0.9.
(The SFT'd default `tiny` with SimPO alone: tests/integration/test_sft.py, docs/sft.md.)"""

import time

import pytest
import torch

from simpo_core.data.synthetic import generate_pairs
from simpo_core.models import load_model_and_tokenizer
from simpo_core.train.config import SimPOConfig
from simpo_core.train.trainer import SimPOTrainer


@pytest.mark.slow
def test_tiny_scratch_preset_learns_the_synthetic_preference(tiny_model_dir, tmp_path):
    torch.set_num_threads(2)
    model, tokenizer = load_model_and_tokenizer(str(tiny_model_dir))
    config = SimPOConfig.preset("tiny-scratch", output_dir=tmp_path / "out", save_steps=0)
    trainer = SimPOTrainer(
        model,
        config,
        tokenizer=tokenizer,
        train_dataset=generate_pairs(2000, seed=1),
        eval_dataset=generate_pairs(200, seed=99),
    )
    start = time.monotonic()
    base = trainer.evaluate()["eval_rewards/accuracies"]
    history = trainer.train()
    curve = [(0, base)] + [(e["step"], e["eval_rewards/accuracies"]) for e in history if "eval_loss" in e]
    print(f"\nheld-out accuracy by step: {curve}; {time.monotonic() - start:.0f} s")
    assert 0.3 <= base <= 0.7
    assert curve[-1][0] == config.max_steps and curve[-1][1] >= 0.9
