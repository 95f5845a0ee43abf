"""What a nightly schedule does to the flow: a decided training skips, an undecided one is regated
(never retrained, never registered twice), a dead worker resumes."""

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


STRICT = "registry.min_gain=0.99"  # no challenger clears this: the version is refused


def client_of(run_flow) -> MlflowClient:
    return MlflowClient(tracking_uri=run_flow.tracking_uri, registry_uri=run_flow.tracking_uri)


def versions(run_flow) -> list[int]:
    return sorted(int(v.version) for v in client_of(run_flow).search_model_versions("name = 'simpo-policy'"))


def evaluated(summary) -> bool:
    return (Path(summary["run_dir"]) / "eval").exists()


def test_reruns_skip_what_was_decided_regate_what_was_not_and_force_or_new_data_train(run_flow):
    first = run_flow(STRICT)
    assert first["skipped"] is False and first["regated"] is False and first["promoted"] is False
    assert first["model_version"] == "1" and first["train_steps"] == 60

    # The worker died between register and promote: the version carries no decision.
    client = client_of(run_flow)
    client.delete_model_version_tag("simpo-policy", "1", "promotion.decision")
    undecided = run_flow(STRICT)
    assert undecided["regated"] is True and undecided["skipped"] is False, undecided["promotion_reason"]
    assert "never gated" in undecided["regate_reason"] and undecided["model_version"] == "1"
    assert undecided["train_steps"] == 0 and not evaluated(undecided)  # its held-out result was reused
    assert undecided["heldout"]["trained"]["pair_outcomes"] == first["heldout"]["trained"]["pair_outcomes"]
    assert client.get_model_version("simpo-policy", "1").tags["promotion.decision"] == "rejected"

    decided = run_flow(STRICT)
    assert decided["skipped"] is True and "under the same gate" in decided["skip_reason"]

    # Other evaluation settings: the same version is evaluated again, then gated.
    reevaluated = run_flow(STRICT, "eval.generation_samples=3")
    assert reevaluated["regated"] is True and reevaluated["train_steps"] == 0 and evaluated(reevaluated)

    # A looser gate may promote a version a stricter one refused.
    looser = run_flow()
    assert looser["regated"] is True and looser["promoted"] is True, looser["promotion_reason"]
    assert looser["champion_version"] == "1" and versions(run_flow) == [1]
    again = run_flow()
    assert again["skipped"] is True and "is the champion" in again["skip_reason"]
    assert "pass --force to retrain anyway" in again["skip_reason"] and again["train_steps"] == 0
    assert not evaluated(again) and versions(run_flow) == [1]

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
