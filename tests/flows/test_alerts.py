"""Failure alerts: a failed run notifies a webhook block once, with a summary artifact and MLflow tags."""

import json
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pytest
from mlflow import MlflowClient
from servers import free_port

from simpo_core.errors import DataError


@contextmanager
def webhook_receiver():
    """An HTTP server on 127.0.0.1 that records every POST body; yields (url, bodies)."""
    bodies: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (the name http.server calls)
            length = int(self.headers.get("Content-Length", 0))
            bodies.append(json.loads(self.rfile.read(length) or b"{}"))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):  # keep the test output quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/alerts", bodies
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_failed_run_notifies_the_block_once_and_records_the_summary(run_flow):
    from prefect.blocks.notifications import CustomWebhookNotificationBlock
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey

    with webhook_receiver() as (url, bodies):
        CustomWebhookNotificationBlock(
            name="simpo alerts", url=url, json_data={"subject": "{{subject}}", "text": "{{body}}"}
        ).save("simpo-test-alerts", overwrite=True)
        # Length alone decides these pairs: the audit step refuses them under policy `fail`.
        with pytest.raises(DataError, match="length bias"):
            run_flow(
                "data.source=synthetic:n=400,bias=1.0,seed=1",
                "audit.policy=fail",
                "alerts.block=custom-webhook/simpo-test-alerts",
            )
        deadline = time.monotonic() + 10
        while not bodies and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1.0)  # a duplicate would arrive now
    assert len(bodies) == 1, bodies
    message = bodies[0]
    assert "audit-length-balance" in message["subject"]
    assert "DataError: length bias" in message["text"]

    client = MlflowClient(tracking_uri=run_flow.tracking_uri)
    experiment = client.get_experiment_by_name("simpo-retrain")
    run = client.search_runs([experiment.experiment_id])[0]
    assert run.info.status == "FAILED"
    assert run.data.tags["failure.step"].startswith("audit-length-balance")
    assert "length bias" in run.data.tags["failure.error"]
    assert run.info.run_id in message["text"], "the alert names the MLflow run"

    flow_run_id = run.data.tags["flow_run_id"]
    with get_client(sync_client=True) as prefect:
        artifacts = prefect.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=["simpo-failure"]), flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])
            )
        )
    assert len(artifacts) == 1
    assert "audit-length-balance" in artifacts[0].data and flow_run_id in artifacts[0].data


def test_the_error_in_a_summary_is_redacted():
    from flows.alerts import _error_text

    error = RuntimeError("cannot reach http://alice:s3cret-pw@mlflow.internal:5000 with hf_" + "Ab1" * 8)
    state = SimpleNamespace(result=lambda raise_on_failure: error, message=None, name="Failed")
    text = _error_text(state)
    assert "s3cret-pw" not in text and "Ab1Ab1" not in text
    assert text.startswith("RuntimeError: cannot reach http://alice:***@mlflow.internal")


def test_crashed_run_runs_the_same_alert(run_flow, monkeypatch):
    """A run whose process is told to exit mid-step ends Crashed, and `on_crashed` alerts as `on_failure` does."""
    from prefect.blocks.notifications import CustomWebhookNotificationBlock
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey

    import tasks.data

    def exit_while_reading(source):
        raise SystemExit("the worker is shutting down")  # a BaseException: Prefect marks the run Crashed

    monkeypatch.setattr(tasks.data, "check_source", exit_while_reading)
    with webhook_receiver() as (url, bodies):
        CustomWebhookNotificationBlock(
            name="simpo crash alerts", url=url, json_data={"subject": "{{subject}}", "text": "{{body}}"}
        ).save("simpo-test-crash-alerts", overwrite=True)
        with pytest.raises(SystemExit):
            run_flow("alerts.block=custom-webhook/simpo-test-crash-alerts")
        deadline = time.monotonic() + 10
        while not bodies and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1.0)  # a duplicate would arrive now
    assert len(bodies) == 1, bodies
    assert "crashed in load-preferences" in bodies[0]["subject"]

    client = MlflowClient(tracking_uri=run_flow.tracking_uri)
    experiment = client.get_experiment_by_name("simpo-retrain")
    run = client.search_runs([experiment.experiment_id])[0]
    assert run.info.status == "FAILED"
    assert run.data.tags["failure.step"].startswith("load-preferences")
    assert "crashed" in run.data.tags["failure.summary"].lower()

    flow_run_id = run.data.tags["flow_run_id"]
    with get_client(sync_client=True) as prefect:
        assert prefect.read_flow_run(flow_run_id).state.is_crashed()
        artifacts = prefect.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=["simpo-failure"]), flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])
            )
        )
    assert len(artifacts) == 1 and "load-preferences" in artifacts[0].data
