"""What a nightly schedule does to the flow: unchanged data skips, a dead worker resumes."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from mlflow import MlflowClient
from safetensors.torch import load_file
from torch.testing import assert_close

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def versions(run_flow):
    client = MlflowClient(tracking_uri=run_flow.tracking_uri, registry_uri=run_flow.tracking_uri)
    return sorted(int(v.version) for v in client.search_model_versions("name = 'simpo-policy'"))


def test_an_unchanged_rerun_registers_nothing_and_force_or_new_data_trains(run_flow):
    first = run_flow()
    assert first["skipped"] is False and first["resumed_from_step"] is None
    again = run_flow()
    assert again["skipped"] is True and again["model_version"] == first["model_version"]
    assert "pass --force to retrain anyway" in again["skip_reason"]
    assert again["wall_seconds"] < 0.6 * first["wall_seconds"], (again["wall_seconds"], first["wall_seconds"])
    assert versions(run_flow) == [1]

    forced = run_flow("force=true")
    assert forced["skipped"] is False and forced["reused_training"] is False and forced["train_steps"] == 60
    new_data = run_flow("data.source=synthetic:n=400,bias=0.0,seed=5")
    assert new_data["skipped"] is False and new_data["training_identity"] != first["training_identity"]
    assert versions(run_flow) == [1, 2, 3]


def simpo_run(workdir: Path, output: str, *, wait: bool = True):
    command = [
        sys.executable, "-m", "flows.cli", "run", "--json", "--output-dir", str(workdir / output),
        "--tracking-uri", f"sqlite:///{workdir / (output + '.db')}", "--data", "synthetic:n=400,seed=3",
        "--model", "tiny-scratch",
        "--set", "train.max_steps=150", "--set", "train.save_steps=10", "--set", "eval.generation_samples=2",
        "--set", "eval.max_new_tokens=8", "--set", "registry.min_generation_samples=2",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        command, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,  # its own process group, killed whole below
    )  # fmt: skip
    if not wait:
        return process
    stdout, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, stderr[-3000:]
    return json.loads(stdout.strip().splitlines()[-1])


def newest_checkpoint_step(output: Path) -> int:
    from simpo_core.train.checkpoint import find_latest_checkpoint

    for folder in output.glob("trainings/*"):
        found = find_latest_checkpoint(folder)
        if found is not None:
            return int(found.name.rsplit("-", 1)[-1])
    return 0


def test_a_rerun_after_a_killed_worker_resumes_to_the_uninterrupted_weights(tiny_model_dir, tmp_path):
    import shutil

    shutil.copytree(tiny_model_dir, tmp_path / ".simpo" / "models" / "tiny")
    victim = simpo_run(tmp_path, "runs", wait=False)
    deadline = time.monotonic() + 300
    while newest_checkpoint_step(tmp_path / "runs") < 20 and victim.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    os.killpg(victim.pid, signal.SIGKILL)  # the worker dies: no retry, no cleanup
    victim.communicate()
    killed_at = newest_checkpoint_step(tmp_path / "runs")
    assert 20 <= killed_at < 150, "the kill must land between a checkpoint and the end of training"

    resumed = simpo_run(tmp_path, "runs")
    assert resumed["resumed_from_step"] >= killed_at and resumed["train_steps"] == 150
    uninterrupted = simpo_run(tmp_path, "fresh")
    assert uninterrupted["resumed_from_step"] is None
    weights = [load_file(Path(s["model_dir"]) / "model.safetensors") for s in (resumed, uninterrupted)]
    assert weights[0].keys() == weights[1].keys()
    for name in weights[0]:
        assert_close(weights[0][name], weights[1][name], rtol=0, atol=1e-4)
