"""Precision policy on the tiny model: a bf16 checkpoint trains like its exact fp32 copy."""

import json

import pytest
import torch

from simpo_core.data.synthetic import generate_pairs
from simpo_core.models import load_model_and_tokenizer
from simpo_core.train.config import SimPOConfig
from simpo_core.train.trainer import SimPOTrainer


@pytest.fixture(autouse=True)
def two_threads():
    torch.set_num_threads(2)


@pytest.fixture(scope="module")
def checkpoints(tiny_model_dir, tmp_path_factory):
    """The tiny model saved in bf16, and the same (bf16-rounded) weights saved in fp32."""
    folder = tmp_path_factory.mktemp("precision")
    model, tokenizer = load_model_and_tokenizer(str(tiny_model_dir))
    model.to(torch.bfloat16).save_pretrained(folder / "bf16")
    model.float().save_pretrained(folder / "fp32")  # exact: every bf16 value is a float32 value
    for name in ("bf16", "fp32"):
        tokenizer.save_pretrained(folder / name)
    return folder / "bf16", folder / "fp32"


def _heldout_loss_change(source, tmp_path, **overrides):
    """Held-out SimPO loss after minus before 30 steps at the paper's lr (1e-6)."""
    model, tokenizer = load_model_and_tokenizer(str(source))
    config = SimPOConfig.preset(
        "tiny-scratch", lr=1e-6, max_steps=30, output_dir=tmp_path / "out", save_steps=0, eval_steps=0, **overrides
    )
    trainer = SimPOTrainer(
        model,
        config,
        tokenizer=tokenizer,
        train_dataset=generate_pairs(240, seed=3),
        eval_dataset=generate_pairs(32, seed=4),
    )
    before = trainer.evaluate()["eval_loss"]
    trainer.train()
    return trainer, trainer.evaluate()["eval_loss"] - before


def test_bf16_checkpoint_trains_like_its_fp32_copy(checkpoints, tmp_path):
    bf16, fp32 = checkpoints
    assert load_model_and_tokenizer(str(bf16))[0].dtype == torch.bfloat16  # transformers keeps the checkpoint's dtype
    trainer, bf16_change = _heldout_loss_change(bf16, tmp_path / "a")
    _, fp32_change = _heldout_loss_change(fp32, tmp_path / "b")
    # Measured: both -3.40e-2 (identical runs). With bf16 AdamW the change was -6.0e-4.
    assert trainer.precision == "fp32" and next(trainer.model.parameters()).dtype == torch.float32
    assert fp32_change < -1e-2
    assert abs(bf16_change - fp32_change) <= 0.05 * abs(fp32_change)


def test_bf16_pure_loses_most_small_updates(checkpoints, tmp_path):
    """The opt-in memory saver is lossy at small learning rates, as documented."""
    bf16, fp32 = checkpoints
    trainer, pure_change = _heldout_loss_change(bf16, tmp_path / "a", precision="bf16-pure")
    _, fp32_change = _heldout_loss_change(fp32, tmp_path / "b")
    assert next(trainer.model.parameters()).dtype == torch.bfloat16
    assert abs(pure_change) < 0.2 * abs(fp32_change)


def test_saved_model_keeps_the_checkpoint_dtype_unless_told(checkpoints, tmp_path):
    bf16, _ = checkpoints
    model, tokenizer = load_model_and_tokenizer(str(bf16))
    trainer = SimPOTrainer(
        model, SimPOConfig.preset("tiny-scratch", output_dir=tmp_path, max_steps=1), tokenizer=tokenizer
    )
    default = trainer.save_model(str(tmp_path / "default"))
    trainer.config.save_dtype = "float32"
    wide = trainer.save_model(str(tmp_path / "wide"))
    assert json.loads((tmp_path / "default" / "config.json").read_text())["dtype"] == "bfloat16"
    assert load_model_and_tokenizer(default)[0].dtype == torch.bfloat16
    assert load_model_and_tokenizer(wide)[0].dtype == torch.float32
    assert next(trainer.model.parameters()).dtype == torch.float32  # saving never casts the master copy
