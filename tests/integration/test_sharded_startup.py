"""Sharded start-up under FSDP2 (gloo on CPU): two processes start from a tied-embedding tiny
Llama without either one loading the whole model, each reads only its own rows of the
checkpoint, and the training ends with the one-process run's weights."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file
from torch.testing import assert_close

from simpo_core.data.synthetic import generate_pairs
from simpo_core.train.config import SimPOConfig
from simpo_core.train.training_folder import finished_training
from simpo_core.train.worker import TrainJob

pytestmark = pytest.mark.slow  # started first, so the workers finish together (tests/conftest.py)

# What each torchrun process runs: a whole-model load is refused, the rows read from the
# checkpoint are counted, and the parameters are checked to be on meta when filling starts.
WORKER = textwrap.dedent(
    """
    import json, os, sys
    from pathlib import Path
    import transformers
    from simpo_core.train import parallel, sharded_start, worker
    from simpo_core.train.config import SimPOConfig

    def refuse(*args, **kwargs):
        raise AssertionError("a process loaded the whole model")

    transformers.AutoModelForCausalLM.from_pretrained = refuse
    seen = {"elements_read": 0, "all_meta_before_fill": None, "tied_after_fill": None}
    read_rows, materialise = sharded_start._read_rows, parallel.materialise

    def counting_read(files, key, rows):
        tensor = read_rows(files, key, rows)
        seen["elements_read"] += tensor.numel()
        return tensor

    def watched_materialise(model, shard_device=None):
        seen["all_meta_before_fill"] = all(p.is_meta for p in model.parameters())
        materialise(model, shard_device)
        seen["tied_after_fill"] = model.lm_head.weight is model.model.embed_tokens.weight

    sharded_start._read_rows, parallel.materialise = counting_read, watched_materialise
    model, pairs, out = sys.argv[1:4]
    config = SimPOConfig(**json.loads(sys.argv[4]), strategy="fsdp", output_dir=out)
    result = worker.run_training(worker.TrainJob(model=model, train_data=Path(pairs), eval_data=None, config=config))
    Path(out, f"seen-{os.environ['RANK']}.json").write_text(json.dumps(seen))
    """
)
SETTINGS = {"max_steps": 3, "batch_size": 2, "gradient_accumulation_steps": 2, "lr": 1e-3}
SETTINGS.update(save_steps=0, eval_steps=0, logging_steps=1, max_length=96, max_prompt_length=48, seed=3)
SETTINGS.update(save_dtype="float32")  # the float32 weights compared, not their bfloat16 rounding


@pytest.fixture(scope="module")
def pairs(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("pairs") / "train.jsonl"
    pd.DataFrame(generate_pairs(12, seed=5)).to_json(path, orient="records", lines=True)
    return path


def tied_head_dropped(weights: dict) -> dict:
    """The saved weights with the output head checked to be the embedding (when the file holds
    it at all: a tied head is usually left out) and then left out, as the one-process file does."""
    head = weights.pop("lm_head.weight", None)
    assert head is None or torch.equal(head, weights["model.embed_tokens.weight"]), "the saved head is untied"
    return weights


def test_two_processes_start_from_their_own_shards_and_train_like_one(tied_model, pairs, tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "TORCHELASTIC_RUN_ID"):
        env.pop(name, None)
    # The one-process reference trains in a fresh process too, as the two processes do.
    one = SimPOConfig(**SETTINGS, strategy="fsdp", output_dir=tmp_path / "one")
    job = TrainJob(model=str(tied_model), train_data=pairs, eval_data=None, config=one).write(tmp_path / "one.yaml")
    alone = [sys.executable, "-m", "simpo_core.train.worker", "--config", str(job)]
    reference = subprocess.run(alone, env=env, capture_output=True, text=True, timeout=300)
    assert reference.returncode == 0, reference.stderr[-3000:]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
    out = tmp_path / "two"
    arguments = [str(script), str(tied_model), str(pairs), str(out), json.dumps(SETTINGS)]
    done = subprocess.run([*torchrun, *arguments], env=env, capture_output=True, text=True, timeout=300)

    assert done.returncode == 0, done.stderr[-3000:]
    seen = [json.loads((out / f"seen-{rank}.json").read_text()) for rank in (0, 1)]
    assert all(rank["all_meta_before_fill"] and rank["tied_after_fill"] for rank in seen), seen
    # The tied output head is the embedding: a checkpoint that also holds `lm_head.weight` (some
    # hub checkpoints do) has it read as the embedding's rows, once.
    saved = load_file(str(tied_model / "model.safetensors"))
    parameters = sum(tensor.numel() for name, tensor in saved.items() if name != "lm_head.weight")
    read = [rank["elements_read"] for rank in seen]
    assert sum(read) == parameters and max(read) < 0.6 * parameters  # every row read once, by its owner only
    final = tied_head_dropped(load_file(str(out / "final" / "model.safetensors")))
    reference = tied_head_dropped(load_file(str(tmp_path / "one" / "final" / "model.safetensors")))
    assert_close(final, reference, rtol=0, atol=1e-4)
    peaks = finished_training(out).peak_memory_bytes
    assert len(peaks) == 2 and min(peaks) > 0


def test_a_model_built_empty_and_filled_equals_the_loaded_one(tiny_model_dir, tmp_path):
    """One process: the empty model, filled whole, has the loaded model's parameters, buffers
    (rotary inv_freq), generation config and seeded LoRA adapters; a checkpoint that lacks a
    tensor is left to the whole load."""
    from simpo_core.models import load_model_and_tokenizer
    from simpo_core.train.parallel import Parallel
    from simpo_core.train.setup import prepare_model
    from simpo_core.train.sharded_start import empty_starting_model, sharded_start

    config = SimPOConfig(lora={"r": 4, "alpha": 8, "dropout": 0.0}, seed=7)
    loaded, _ = prepare_model(load_model_and_tokenizer(str(tiny_model_dir))[0], config, "cpu")
    empty, _ = empty_starting_model(str(tiny_model_dir))
    assert all(p.is_meta for p in empty.parameters()) and sharded_start(empty) is not None
    empty, policy = prepare_model(empty, config, "cpu")
    Parallel(empty, "single", policy)

    assert sharded_start(empty) is None
    assert empty.generation_config.to_dict() == loaded.generation_config.to_dict()
    for mine, theirs in (
        (dict(empty.named_parameters()), dict(loaded.named_parameters())),
        (dict(empty.named_buffers()), dict(loaded.named_buffers())),
    ):
        assert mine.keys() == theirs.keys()
        for name, value in theirs.items():
            assert torch.equal(mine[name], value) and mine[name].requires_grad == value.requires_grad, name
    assert any("lora_A" in name for name in dict(empty.named_parameters()))

    incomplete = tmp_path / "incomplete"
    weights = load_file(str(tiny_model_dir / "model.safetensors"))
    weights.pop("lm_head.weight")
    incomplete.mkdir()
    for path in tiny_model_dir.iterdir():
        if path.suffix != ".safetensors" and path.is_file():
            (incomplete / path.name).write_bytes(path.read_bytes())
    from safetensors.torch import save_file

    save_file(weights, str(incomplete / "model.safetensors"))
    assert empty_starting_model(str(incomplete)) is None
