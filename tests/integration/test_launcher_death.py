"""A two-process training whose launcher dies (SIGKILL, as when a worker is OOM-killed) stops
with it: no training process outlives the launcher to keep writing checkpoints, and a rerun
with --resume continues from the newest complete checkpoint."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from simpo_core.data.synthetic import generate_pairs
from simpo_core.train.launch import JOB_FILE
from simpo_core.train.watchdog import die_with_parent, process_alive, stop_job

pytestmark = pytest.mark.slow  # started first, so the workers finish together (tests/conftest.py)

SIMPO = str(Path(sys.executable).with_name("simpo"))


def _env() -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "TORCHELASTIC_RUN_ID"):
        env.pop(name, None)
    return env


def write_job(model_dir: Path, folder: Path) -> Path:
    """Two processes, a checkpoint every 5 steps and more steps than the test waits for."""
    pd.DataFrame(generate_pairs(300, seed=3)).to_json(folder / "train.jsonl", orient="records", lines=True)
    simpo = {
        "preset": "tiny",
        "num_processes": 2,
        "max_steps": 200,
        "batch_size": 2,
        "save_steps": 5,
        "save_total_limit": 2,
        "logging_steps": 1,
        "eval_steps": 0,
        "max_length": 64,
        "max_prompt_length": 32,
        "output_dir": str(folder / "out"),
    }
    job = folder / "job.yaml"
    job.write_text(yaml.safe_dump({"model": str(model_dir), "train_data": str(folder / "train.jsonl"), "train": simpo}))
    return job


def job_processes(job_file: Path) -> list[int]:
    """Live processes (torchrun and its ranks) running the job file that the launcher wrote."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            command = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if str(job_file).encode() in command and process_alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def test_no_training_process_outlives_a_killed_launcher_and_a_rerun_resumes(tiny_model_dir, tmp_path):
    job = write_job(tiny_model_dir, tmp_path)
    out = tmp_path / "out"
    log = (tmp_path / "launcher.log").open("w")
    launcher = subprocess.Popen([SIMPO, "train", "--config", str(job)], env=_env(), stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 240
        while not ((out / "checkpoint-5" / "trainer_state.json").is_file() and len(job_processes(out / JOB_FILE)) >= 3):
            assert launcher.poll() is None, (tmp_path / "launcher.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "no checkpoint within 240 s"
            time.sleep(0.05)
        assert not (out / "final.json").exists(), "the training finished before its launcher could be killed"
        os.kill(launcher.pid, signal.SIGKILL)  # the launcher alone, not its process group
        launcher.wait()

        deadline = time.monotonic() + 15
        while job_processes(out / JOB_FILE) and time.monotonic() < deadline:
            time.sleep(0.2)
        survivors = job_processes(out / JOB_FILE)
        assert survivors == [], f"{len(survivors)} training process(es) outlived their launcher by 15 s"
        assert not (out / "final.json").exists(), "training went on after its launcher died"
    finally:
        for pid in job_processes(out / JOB_FILE):
            os.kill(pid, signal.SIGKILL)
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()

    rerun = subprocess.run(
        [SIMPO, "train", "--config", str(job), "--resume"], env=_env(), capture_output=True, text=True, timeout=300
    )
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    done = json.loads((out / "final.json").read_text())
    assert done["steps"] == 200 and done["resumed_from_step"] >= 5
    assert (out / "final" / "model.safetensors").is_file()


def test_a_process_started_with_die_with_parent_dies_with_its_parent(tmp_path):
    """The kernel stops the child as soon as the process that started it is SIGKILLed."""
    starter = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import subprocess, sys, time\n"
            "from simpo_core.train.watchdog import die_with_parent\n"
            "child = subprocess.Popen(['sleep', '120'], start_new_session=True, preexec_fn=die_with_parent())\n"
            "print(child.pid, flush=True)\n"
            "time.sleep(120)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    child = int(starter.stdout.readline())
    assert die_with_parent() is not None and process_alive(child)
    os.kill(starter.pid, signal.SIGKILL)
    starter.wait()
    deadline = time.monotonic() + 10
    while process_alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    alive = process_alive(child)
    if alive:
        os.kill(child, signal.SIGKILL)
    assert not alive, "the child outlived the process that started it"


def test_stop_job_ends_the_whole_group_and_kills_what_ignores_sigterm():
    """What a launcher that returns or raises does with its job: SIGTERM, then SIGKILL."""
    for script, status in (
        ("sleep 120 & echo $!; wait", -signal.SIGTERM),
        ("trap '' TERM; sleep 120 & echo $!; wait", -9),
    ):
        job = subprocess.Popen(["sh", "-c", script], stdout=subprocess.PIPE, text=True, start_new_session=True)
        grandchild = int(job.stdout.readline())
        stop_job(job, grace_seconds=0.5)
        deadline = time.monotonic() + 10
        while process_alive(grandchild) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert job.returncode == status and not process_alive(grandchild), script
