"""Two processes under torchrun (gloo, CPU) train exactly like one process with the same
effective batch: same per-step metrics, same gradient norms, same final weights."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from torch.testing import assert_close

from simpo_core.train.distributed import shard, torchrun_command

WORKER = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    import torch
    torch.set_num_threads(1)
    from simpo_core.train.config import SimPOConfig
    from simpo_core.models import load_model_and_tokenizer
    from simpo_core.data.synthetic import generate_pairs
    from simpo_core.train.trainer import SimPOTrainer

    model_dir, out = sys.argv[1], Path(sys.argv[2])
    model, tokenizer = load_model_and_tokenizer(model_dir)
    # 3 steps of 2 micro-batches of 3 pairs: 6 pairs per step whatever the process count.
    config = SimPOConfig.for_tiny(output_dir=out, max_steps=3, batch_size=3, gradient_accumulation_steps=2,
                                  save_steps=2, eval_steps=0, logging_steps=1, sft_weight=1.0)
    events = []
    trainer = SimPOTrainer(model, config, tokenizer=tokenizer, train_dataset=generate_pairs(30, seed=5),
                           eval_dataset=generate_pairs(5, seed=6), callbacks=[lambda e, s, m: events.append(e)])
    history = trainer.train()
    path = trainer.save_model()
    if trainer.rank == 0:
        torch.save({n: p.detach() for n, p in trainer.model.named_parameters()}, out / "weights.pt")
    (out / f"rank{trainer.rank}.json").write_text(json.dumps({"history": history, "events": events, "world": trainer.world_size}))
    """
)


def _run(command, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.getcwd()}
    env.pop("WORLD_SIZE", None)
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]


def test_shard_is_contiguous_and_covers_everything():
    items = list(range(7))
    parts = [shard(items, i, 3) for i in range(3)]
    assert parts == [[0, 1], [2, 3], [4, 5, 6]]
    assert shard([1], 1, 2) == [1] and shard([1], 0, 2) == []


def test_two_processes_match_one(tiny_model_dir, tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    one, two = tmp_path / "one", tmp_path / "two"
    _run([sys.executable, str(script), str(tiny_model_dir), str(one)], tmp_path)
    _run(torchrun_command([str(script), str(tiny_model_dir), str(two)], num_processes=2), tmp_path)

    single = json.loads((one / "rank0.json").read_text())
    ranks = [json.loads((two / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert single["world"] == 1 and ranks[0]["world"] == 2
    assert ranks[0]["history"] == ranks[1]["history"]  # every process holds the summed metrics
    assert ranks[0]["events"] and not ranks[1]["events"]  # callbacks fire once, on rank 0
    for mine, theirs in zip(single["history"], ranks[0]["history"], strict=True):
        assert mine.keys() == theirs.keys()
        for key, value in mine.items():
            assert theirs[key] == pytest.approx(value, rel=1e-4, abs=1e-5), (mine["step"], key)
    assert_close(torch.load(two / "weights.pt"), torch.load(one / "weights.pt"), rtol=0, atol=1e-4)
    assert (two / "checkpoint-2" / "trainer_state.json").is_file() and (two / "final" / "config.json").is_file()
