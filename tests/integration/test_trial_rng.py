"""A trial's training draws its own random numbers: trained beside another in a thread of the
same process (the sweep's thread runner), it ends with exactly the weights it gets alone."""

import json
import shutil
import threading
from pathlib import Path

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from simpo_core.data.synthetic import generate_pairs
from simpo_core.train.config import LoraSettings, SimPOConfig
from simpo_core.train.worker import TrainJob, run_training


@pytest.fixture(autouse=True)
def two_threads():
    torch.set_num_threads(2)


@pytest.fixture(scope="module")
def pairs_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("pairs") / "pairs.jsonl"
    pd.DataFrame(generate_pairs(48, seed=3)).to_json(path, orient="records", lines=True)
    return path


@pytest.fixture(scope="module")
def dropout_model_dir(tiny_model_dir, tmp_path_factory) -> Path:
    """The tiny model with attention dropout: every training step draws random numbers."""
    folder = tmp_path_factory.mktemp("dropout") / "tiny"
    shutil.copytree(tiny_model_dir, folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "attention_dropout": 0.3}))
    return folder


def _job(model: Path, data: Path, out: Path, seed: int, lr: float, lora: bool) -> TrainJob:
    config = SimPOConfig.preset(
        "tiny-scratch",
        lora=LoraSettings(r=4, alpha=8, dropout=0.3) if lora else None,  # adapter init and dropout draw
        max_steps=6,
        batch_size=4,
        gradient_accumulation_steps=1,
        seed=seed,
        lr=lr,
        output_dir=out,
        save_steps=0,
        eval_steps=0,
    )
    return TrainJob(str(model), data, None, config, device="cpu")


def _weights(model_dir: Path) -> dict[str, torch.Tensor]:
    return {
        f"{path.name}:{name}": tensor
        for path in model_dir.glob("*.safetensors")
        for name, tensor in load_file(path).items()
    }


@pytest.mark.parametrize("lora", [True, False], ids=["lora-dropout", "attention-dropout"])
def test_a_trial_trained_beside_another_gets_the_weights_it_gets_alone(
    lora, tiny_model_dir, dropout_model_dir, pairs_file, tmp_path
):
    model = tiny_model_dir if lora else dropout_model_dir
    trial = _job(model, pairs_file, tmp_path / "alone", seed=1, lr=1e-3, lora=lora)
    alone = _weights(run_training(trial).model_dir)

    jobs = {
        "trial": _job(model, pairs_file, tmp_path / "beside", seed=1, lr=1e-3, lora=lora),
        "other": _job(model, pairs_file, tmp_path / "other", seed=2, lr=3e-3, lora=lora),
    }
    results, errors, start = {}, [], threading.Barrier(len(jobs))

    def train(name: str) -> None:
        start.wait()  # both build and train at the same time
        try:
            results[name] = run_training(jobs[name])
        except Exception as error:  # reported below, not lost in the thread
            errors.append(error)

    threads = [threading.Thread(target=train, args=(name,)) for name in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors

    beside = _weights(results["trial"].model_dir)
    assert beside.keys() == alone.keys()
    changed = [name for name in alone if not torch.equal(alone[name], beside[name])]
    assert not changed, f"weights differ from the trial trained alone: {changed[:3]}"
    other = _weights(results["other"].model_dir)
    assert any(not torch.equal(alone[name], other[name]) for name in alone)  # the other trial trained differently


def test_a_resumed_training_continues_its_own_dropout_stream(tiny_model_dir, pairs_file, tmp_path):
    """The checkpoint records this training's generator state and resuming restores it: the
    resumed run ends with the uninterrupted run's weights."""
    uninterrupted = _job(tiny_model_dir, pairs_file, tmp_path / "whole", seed=1, lr=1e-3, lora=True)
    uninterrupted.config = uninterrupted.config.model_copy(update={"save_steps": 3})
    whole = _weights(run_training(uninterrupted).model_dir)

    resumed = _job(tiny_model_dir, pairs_file, tmp_path / "resumed", seed=1, lr=1e-3, lora=True)
    shutil.copytree(tmp_path / "whole" / "checkpoint-3", tmp_path / "resumed" / "checkpoint-3")
    result = run_training(resumed, resume=True)
    assert result.resumed_from_step == 3
    assert all(torch.equal(whole[name], tensor) for name, tensor in _weights(result.model_dir).items())
