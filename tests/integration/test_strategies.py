"""DDP and FSDP2 with gloo on CPU: two processes (or two simulated machines) train the tiny
model to the same weights as one process, and sharded checkpoints resume after a SIGKILL and
on another process count. Every run goes through `simpo train --config FILE`."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from safetensors.torch import load_file
from torch.testing import assert_close

from simpo_core.data.synthetic import generate_pairs
from simpo_core.train.training_folder import read_history
from simpo_core.train.worker import read_job, run_training

pytestmark = pytest.mark.slow  # started first, so the workers finish together (tests/conftest.py)

SIMPO = str(Path(sys.executable).with_name("simpo"))
STEPS = 12


def _env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", **extra}
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "TORCHELASTIC_RUN_ID"):
        env.pop(name, None)
    return env


@pytest.fixture(scope="module")
def data(tiny_model_dir, tmp_path_factory) -> Path:
    """The tiny model (`model/`) and the pairs to train on, in one folder."""
    folder = tmp_path_factory.mktemp("pairs")
    (folder / "model").symlink_to(tiny_model_dir)
    pd.DataFrame(generate_pairs(40, seed=5)).to_json(folder / "train.jsonl", orient="records", lines=True)
    pd.DataFrame(generate_pairs(6, seed=6)).to_json(folder / "eval.jsonl", orient="records", lines=True)
    return folder


def write_job(data: Path, out: Path, steps: int = STEPS, **simpo) -> Path:
    """A job of `steps` steps of 2 micro-batches of 3 pairs (6 pairs per step, whatever the process count)."""
    values = {"preset": "tiny", "max_steps": steps, "batch_size": 3, "gradient_accumulation_steps": 2}
    values.update(save_steps=6, eval_steps=0, logging_steps=4, output_dir=str(out), **simpo)
    job = {"model": str(data / "model"), "train_data": str(data / "train.jsonl"), "eval_data": str(data / "eval.jsonl")}
    out.mkdir(parents=True, exist_ok=True)
    path = out.with_name(out.name + ".yaml")
    path.write_text(yaml.safe_dump({**job, "train": values}))
    return path


def one_process(data: Path, out: Path, steps: int = STEPS, **simpo) -> Path:
    run_training(read_job(write_job(data, out, steps, strategy="fsdp", **simpo)))
    return out


def weights(out: Path) -> dict:
    return load_file(str(out / "final" / "model.safetensors"))


def simpo_train(config: Path, *extra: str, env: dict[str, str] | None = None) -> None:
    done = subprocess.run(
        [SIMPO, "train", "--config", str(config), *extra],
        env=env or _env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory) -> Path:
    """The uninterrupted one-process run everything is compared with."""
    return one_process(data, tmp_path_factory.mktemp("one") / "out")


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_two_processes_train_like_one(strategy, data, reference, tmp_path):
    out = tmp_path / strategy
    config = write_job(data, out, strategy=strategy)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
    done = subprocess.run(
        [*torchrun, SIMPO, "train", "--config", str(config)], env=_env(), capture_output=True, text=True, timeout=300
    )

    assert done.returncode == 0, done.stderr[-3000:]
    assert_close(weights(out), weights(reference), rtol=0, atol=1e-4)
    for mine, theirs in zip(read_history(reference), read_history(out), strict=True):
        for key in {"loss", "eval_loss", "grad_norm"} & mine.keys():
            assert theirs.get(key) == pytest.approx(mine.get(key), rel=1e-4), (mine["step"], key)
    sharded = (out / "checkpoint-6" / "sharded" / ".metadata").is_file()
    assert sharded == (strategy == "fsdp")
    if strategy == "fsdp":  # a two-process sharded checkpoint resumes in one process
        resumed = tmp_path / "resumed-on-one"
        resumed.mkdir()
        shutil.copytree(out / "checkpoint-6", resumed / "checkpoint-6")
        result = run_training(read_job(write_job(data, resumed, strategy="fsdp")), resume=True)
        assert result.resumed_from_step == 6
        assert_close(weights(resumed), weights(reference), rtol=0, atol=1e-4)


def test_fsdp_with_lora_killed_after_a_checkpoint_resumes_to_the_same_weights(data, tmp_path):
    """LoRA (merged on save) and gradient checkpointing under FSDP2; the checkpoints hold the adapter only."""
    steps = 24  # long enough that the kill lands mid-run
    # No adapter dropout: each process would draw its own masks, which one process does not.
    lora = {"lora": {"r": 4, "alpha": 8, "dropout": 0.0, "merge_on_save": True}, "gradient_checkpointing": True}
    uninterrupted = one_process(data, tmp_path / "one", steps, **lora)
    config = write_job(data, tmp_path / "killed", steps, strategy="fsdp", num_processes=2, **lora)
    run = subprocess.Popen(
        [SIMPO, "train", "--config", str(config)],
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 240
    while not (tmp_path / "killed" / "checkpoint-6").is_dir() and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.killpg(run.pid, signal.SIGKILL)  # the launcher and both training processes
    run.wait()
    assert not (tmp_path / "killed" / "final.json").exists(), "the run finished before it could be killed"

    simpo_train(config, "--resume")

    assert_close(weights(tmp_path / "killed"), weights(uninterrupted), rtol=0, atol=1e-4)
    assert (tmp_path / "killed" / "final" / "adapter" / "adapter_config.json").is_file()
    saved = sum(path.stat().st_size for path in (tmp_path / "killed" / "checkpoint-6" / "sharded").glob("*.distcp"))
    assert (
        saved < (tmp_path / "killed" / "final" / "model.safetensors").stat().st_size / 10
    )  # adapter + its AdamW state


def test_two_machines_meet_at_a_rendezvous_and_train_like_one(data, reference, tmp_path):
    """Two launchers, each one process on its own 'machine', as `simpo train` runs on each node."""
    config = write_job(data, tmp_path / "nodes", strategy="fsdp", nnodes=2)
    env = _env(PET_RDZV_ENDPOINT=f"127.0.0.1:{_free_port()}")
    nodes = [
        subprocess.Popen([SIMPO, "train", "--config", str(config)], env=env, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    errors = [node.communicate(timeout=300)[1] for node in nodes]

    assert [node.returncode for node in nodes] == [0, 0], errors[0][-2000:] + errors[1][-2000:]
    assert_close(weights(tmp_path / "nodes"), weights(reference), rtol=0, atol=1e-4)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# Each process builds a small model, from its own seed or from a shared one, and checks the replicas.
REPLICA_CHECK = """
import os, sys, torch
from simpo_core.errors import ConfigError
from simpo_core.train import distributed

distributed.init_distributed()
rank = distributed.rank()
torch.manual_seed(0 if sys.argv[1] == "same" else rank)
model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 2))
try:
    distributed.check_replicas_agree(model)
    print(f"rank {rank}: agree")
except ConfigError as error:
    print(f"rank {rank}: {error}")
distributed.close()
"""


def test_ddp_checks_that_every_process_starts_from_the_same_weights(tmp_path):
    """No broadcast of rank 0's weights under ddp: processes that built different weights are stopped."""
    script = tmp_path / "replicas.py"
    script.write_text(REPLICA_CHECK)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", str(script)]
    outputs = {}
    for seeds in ("same", "own"):
        done = subprocess.run([*torchrun, seeds], env=_env(), capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        outputs[seeds] = done.stdout

    assert outputs["same"].count(": agree") == 2
    assert outputs["own"].count("different weights (first: 0.weight)") == 2
