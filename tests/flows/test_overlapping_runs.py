"""Two runs of one training started together make exactly one version."""

import json
import os
import shutil
import subprocess
import sys

import pytest
from mlflow import MlflowClient

pytestmark = pytest.mark.slow  # started first, so the workers finish together (tests/conftest.py)


def start_run(workdir, name: str):
    command = [
        sys.executable, "-m", "flows.cli", "run", "--json", "--output-dir", str(workdir / "runs"),
        "--tracking-uri", f"sqlite:///{workdir / 'mlflow.db'}", "--data", "synthetic:n=300,seed=4",
        "--model", "tiny-scratch", "--set", "train.max_steps=20", "--set", "eval.generation_samples=2",
        "--set", "eval.max_new_tokens=8", "--set", "registry.min_generation_samples=2",
    ]  # fmt: skip
    # Each run has its own Prefect API (as two workers would); they share the output folder and MLflow.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PREFECT_HOME": str(workdir / f"prefect-{name}")}
    return subprocess.Popen(command, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_two_overlapping_runs_of_one_training_register_one_version(tiny_model_dir, tmp_path):
    shutil.copytree(tiny_model_dir, tmp_path / ".simpo" / "models" / "tiny")
    # The tracking store exists, as it does for a schedule: two first-ever starts would race to
    # create its tables (MLflow's schema migration), which is not what this test is about.
    MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}").search_experiments()
    processes = [start_run(tmp_path, name) for name in ("a", "b")]
    summaries = []
    for process in processes:
        stdout, stderr = process.communicate(timeout=600)
        assert process.returncode == 0, stderr[-3000:]
        summaries.append(json.loads(stdout.strip().splitlines()[-1]))

    assert len({summary["training_identity"] for summary in summaries}) == 1
    trained = [summary for summary in summaries if not summary["skipped"]]
    waited = [summary for summary in summaries if summary["skipped"]]
    assert len(trained) == 1 and len(waited) == 1, [s["promotion_reason"] for s in summaries]
    assert waited[0]["model_version"] == trained[0]["model_version"] == "1"
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=store, registry_uri=store)  # never a registry another test pointed MLflow at
    assert [v.version for v in client.search_model_versions("name = 'simpo-policy'")] in (["1"], [1])
