"""`simpo run` against real Prefect and MLflow servers started on 127.0.0.1."""

import json
import os
import subprocess
import sys

import pytest

from servers import mlflow_server, prefect_server

pytestmark = pytest.mark.slow


def test_simpo_run_against_real_servers(tmp_path):
    with mlflow_server(tmp_path) as (tracking_uri, _), prefect_server(tmp_path) as api_url:
        env = {**os.environ, "PREFECT_API_URL": api_url, "MLFLOW_TRACKING_URI": tracking_uri}
        command = [sys.executable, "-m", "flows.cli", "run", "--json", "--output-dir", str(tmp_path / "runs"),
                   "--data", "synthetic:n=300,seed=2", "--set", "train.max_steps=30", "--set", "eval.generation_samples=2",
                   "--set", "eval.max_new_tokens=8"]
        result = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=900)
        assert result.returncode == 0, result.stderr[-3000:]
        summary = json.loads(result.stdout.strip().splitlines()[-1])

        from mlflow import MlflowClient
        from prefect.client.orchestration import get_client

        version = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri).get_model_version(
            "simpo-policy", summary["model_version"])
        assert version.run_id == summary["mlflow_run_id"]
        assert "challenger" in version.aliases

        from prefect.settings import PREFECT_API_URL, temporary_settings

        with temporary_settings({PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
            flow_run = client.read_flow_run(summary["flow_run_id"])
        assert flow_run.state.is_completed()
        assert flow_run.name.startswith("synthetic-on-tiny")
