"""Injected faults: divergence, an unreachable tracking server, secrets that must not leak."""

import dataclasses
import json

import pytest
from mlflow import MlflowClient
from prefect import flow
from servers import free_port, mlflow_server

HELDOUT = {"trained": {"reward_accuracy": 0.9, "length_controlled_accuracy": 0.88, "reward_margin": 1.5}}


def test_divergence_stops_the_flow_and_registers_nothing(run_flow, monkeypatch):
    import simpo_core.train.parallel as parallel_module
    from simpo_core.train.trainer import TrainingDivergedError

    original = parallel_module.pair_logps
    calls = {"n": 0}

    def poisoned(model, batch):  # the forward of the fourth micro-batch turns NaN
        logps = original(model, batch)
        calls["n"] += 1
        return dataclasses.replace(logps, chosen=logps.chosen * float("nan")) if calls["n"] > 3 else logps

    monkeypatch.setattr(parallel_module, "pair_logps", poisoned)  # the one-process forward
    with pytest.raises(TrainingDivergedError, match="training diverged at step 4"):
        run_flow()
    assert calls["n"] == 4, "a divergence must not be retried"
    client = MlflowClient(tracking_uri=run_flow.tracking_uri, registry_uri=run_flow.tracking_uri)
    assert client.search_model_versions("name = 'simpo-policy'") == []
    experiment = client.get_experiment_by_name("simpo-retrain")
    assert client.search_runs([experiment.experiment_id])[0].info.status == "FAILED"


@pytest.mark.slow
def test_tracking_outage_during_registration(prefect_harness, tmp_path, tiny_model_dir, monkeypatch, caplog):
    """Server down: retries with backoff, then a clear error; back up: exactly one version."""
    from tasks.helpers.retry import TrackingUnavailableError
    from tasks.helpers.tracking import Tracking
    from tasks.registry import register_model_task

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    port = free_port()
    with mlflow_server(tmp_path, port) as (uri, _):
        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        run_id = client.create_run(client.create_experiment("outage")).info.run_id

    register = register_model_task.with_options(retry_delay_seconds=0.2)

    @flow
    def register_once():
        return register(str(tiny_model_dir), "simpo-policy", Tracking(uri, run_id), HELDOUT)

    with pytest.raises(TrackingUnavailableError, match="unreachable while registering the model"):
        register_once()
    assert "Retry 3/3" in caplog.text

    with mlflow_server(tmp_path, port):
        first, second = register_once(), register_once()
        assert first == second == "1"
        assert len(client.search_model_versions("name = 'simpo-policy'")) == 1
        assert str(client.get_model_version_by_alias("simpo-policy", "challenger").version) == "1"


@pytest.mark.slow
def test_secrets_never_reach_params_tags_logs_or_artifacts(run_flow, tmp_path, monkeypatch, caplog):
    hub_token, password = "hf_" + "Zq7" * 12, "pw-" + "x9" * 10
    env_password = "env-pw-" + "k4" * 10  # credentials from the environment, as for a secured server
    monkeypatch.setenv("HF_TOKEN", hub_token)
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "alice")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", env_password)
    (tmp_path / "mlflow").mkdir()
    with mlflow_server(tmp_path / "mlflow") as (uri, _):
        secret_uri = uri.replace("http://", f"http://alice:{password}@")
        summary = run_flow("train.max_steps=5", "eval.generation_samples=0", tracking=secret_uri)
        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        run = client.get_run(summary["mlflow_run_id"])
        version = client.get_model_version("simpo-policy", summary["model_version"])
        exposed = [
            json.dumps(run.data.params),
            json.dumps(run.data.tags),
            json.dumps(version.tags),
            caplog.text,
            json.dumps(summary),
            *prefect_logs_and_artifacts(summary["flow_run_id"]),
        ]
        artifacts = tmp_path / "downloaded"
        import mlflow

        mlflow.artifacts.download_artifacts(run_id=run.info.run_id, dst_path=str(artifacts), tracking_uri=uri)
        exposed += [
            path.read_text(errors="ignore")
            for path in artifacts.rglob("*")
            if path.is_file() and path.stat().st_size < 5_000_000
        ]
    for text in exposed:
        assert password not in text and hub_token not in text and env_password not in text
    assert "alice:***@" in run.data.params["registry.tracking_uri"]


def prefect_logs_and_artifacts(flow_run_id: str) -> list[str]:
    """The flow run's log lines and artifacts as the Prefect API returns them."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, LogFilter, LogFilterFlowRunId

    with get_client(sync_client=True) as client:
        logs, page = [], None
        while page != []:  # the API answers at most 200 lines a request
            page = client.read_logs(
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])), limit=200, offset=len(logs)
            )
            logs += page
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    assert logs and artifacts
    return [log.message for log in logs] + [json.dumps(artifact.data) for artifact in artifacts]
