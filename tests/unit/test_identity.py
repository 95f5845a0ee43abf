"""A training's identity: what decides the weights changes it, where and how it runs does not."""

from simpo_core.identity import training_identity
from simpo_core.train.config import SimPOConfig


def _identity(**fields) -> str:
    return training_identity("data-sha", {"split": {"seed": 0}}, SimPOConfig(**fields).model_dump(mode="json"), "m")


def test_process_layout_keeps_the_identity_and_the_math_or_the_strategy_changes_it():
    one = _identity()
    assert _identity(num_processes=8, nnodes=2, save_steps=7, output_dir="elsewhere") == one
    assert _identity(strategy="fsdp") != one  # its checkpoints are sharded: not interchangeable
    assert _identity(lr=2e-6) != one and _identity(seed=1) != one
