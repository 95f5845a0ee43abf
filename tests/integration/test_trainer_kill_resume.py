"""A CPU training process killed with SIGKILL after a checkpoint, then resumed, ends with the
same weights as a run that was never interrupted."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file
from torch.testing import assert_close

pytestmark = pytest.mark.slow  # started first, so the workers finish together (tests/conftest.py)

PROJECT_ROOT = Path(__file__).resolve().parents[2]

TRAIN_SCRIPT = textwrap.dedent("""
    import logging, sys, time, torch
    torch.set_num_threads(1)
    logging.basicConfig(level=logging.INFO)
    from simpo_core.train.config import SimPOConfig
    from simpo_core.models import load_model_and_tokenizer
    from simpo_core.data.synthetic import generate_pairs
    from simpo_core.train.events import TrainerEvents
    from simpo_core.train.trainer import SimPOTrainer

    model_dir, output_dir, mode = sys.argv[1:4]
    model, tokenizer = load_model_and_tokenizer(model_dir)
    config = SimPOConfig.for_tiny(output_dir=output_dir, max_steps=12, save_steps=3, logging_steps=1,
                                  eval_steps=0, batch_size=4, gradient_accumulation_steps=2)
    class Pause(TrainerEvents):
        def on_log(self, step, metrics):
            time.sleep(0.5)

    # "slow" sleeps after each logged step (no effect on the math) so the kill lands mid-run.
    trainer = SimPOTrainer(model, config, tokenizer=tokenizer, train_dataset=generate_pairs(64, seed=11),
                           callbacks=[Pause()] if mode == "slow" else [])
    trainer.train(resume=(mode == "resume"))
    trainer.save_model(output_dir + "/final")
""")


def _run(script, *args, wait=True):
    command = [sys.executable, str(script), *map(str, args)]
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    if wait:
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_sigkill_then_resume_matches_uninterrupted(tiny_model_dir, tmp_path):
    script = tmp_path / "train.py"
    script.write_text(TRAIN_SCRIPT)
    killed_dir = tmp_path / "killed"

    process = _run(script, tiny_model_dir, killed_dir, "slow", wait=False)
    deadline = time.monotonic() + 240
    while not (killed_dir / "checkpoint-3" / "trainer_state.json").exists():
        assert process.poll() is None, "the training process ended before its first checkpoint"
        assert time.monotonic() < deadline, "no checkpoint within 240 s"
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    assert process.wait(timeout=30) == -signal.SIGKILL
    assert not (killed_dir / "final").exists()
    assert not (killed_dir / "checkpoint-12").exists()

    resumed = _run(script, tiny_model_dir, killed_dir, "resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resumed from {killed_dir}/checkpoint-" in resumed.stderr
    reference = _run(script, tiny_model_dir, tmp_path / "reference", "plain")
    assert reference.returncode == 0, reference.stderr[-3000:]

    expected = load_file(str(tmp_path / "reference" / "final" / "model.safetensors"))
    actual = load_file(str(killed_dir / "final" / "model.safetensors"))
    assert expected.keys() == actual.keys()
    for name, tensor in expected.items():
        assert_close(actual[name], tensor, rtol=0, atol=1e-6, msg=name)
