"""The flow, `simpo deploy`, `simpo serve` and the champion loader against secured servers.

MLflow runs its basic-auth app and Prefect requires an API auth string; both refuse a request
without credentials, the pipeline authenticates from the environment alone, and neither secret
shows in what the runs leave behind (params, tags, summaries, logs, artifacts, output).
"""

import json
import os
import secrets
import subprocess
import sys
import urllib.request
from base64 import b64encode
from pathlib import Path
from urllib.error import HTTPError

import pytest
from servers import BasicAuth, mlflow_server, prefect_server
from test_real_servers import assert_one_at_a_time, wait_for_deployment

pytestmark = pytest.mark.slow

SMALL_RUN = [
    "--data",
    "synthetic:n=400,seed=2",
    "--set",
    "eval.generation_samples=2",
    "--set",
    "eval.max_new_tokens=8",
    "--set",
    "registry.min_generation_samples=2",
]


def status_of(url: str, data: bytes | None = None, headers: dict[str, str] | None = None) -> int:
    """The HTTP status of one request (an error status is returned, not raised)."""
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except HTTPError as error:
        return error.code


def basic(credentials: str) -> dict[str, str]:
    return {"Authorization": "Basic " + b64encode(credentials.encode()).decode()}


def simpo(env, cwd, *args, timeout=600):
    """Run one `simpo` command; returns (stdout, stderr), failing the test on a non-zero exit."""
    done = subprocess.run(
        [sys.executable, "-m", "flows.cli", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout, done.stderr


def test_pipeline_against_secured_servers(tmp_path, monkeypatch):
    admin = BasicAuth("simpo-admin", "mlflow-pw-" + secrets.token_hex(8))
    auth_string = "prefect-auth-" + secrets.token_hex(8)
    with mlflow_server(tmp_path, auth=admin) as (tracking_uri, _), prefect_server(tmp_path, auth_string) as api_url:
        assert_refused_without_credentials(tracking_uri, api_url, admin, auth_string)
        env = {
            **os.environ,
            "MLFLOW_TRACKING_URI": tracking_uri,
            "MLFLOW_TRACKING_USERNAME": admin.username,
            "MLFLOW_TRACKING_PASSWORD": admin.password,
            "PREFECT_API_URL": api_url,
            "PREFECT_API_AUTH_STRING": auth_string,
            "OMP_NUM_THREADS": "1",
        }
        for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
            monkeypatch.setenv(name, env[name])  # the test's own MLflow client authenticates the same way

        outputs, summary = run_json(env, tmp_path, "run", "train.max_steps=20")
        from mlflow import MlflowClient

        registry = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        check_champion_loader(registry, tracking_uri, summary)
        outputs += simpo(env, tmp_path, "deploy", timeout=300)
        with prefect_settings(api_url, auth_string):
            outputs += check_served_deployment(env, tmp_path, api_url)
            exposed = outputs + [json.dumps(summary)]
            exposed += mlflow_records(registry, tracking_uri, tmp_path, summary)
            exposed += prefect_records(summary)
    for text in exposed:
        assert admin.password not in text and auth_string not in text


def prefect_settings(api_url, auth_string):
    """The test's own Prefect client talks to the secured server."""
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

    return temporary_settings({PREFECT_API_URL: api_url, PREFECT_API_AUTH_STRING: auth_string})


def assert_refused_without_credentials(tracking_uri, api_url, admin, auth_string):
    """Each server answers 401 without (or with wrong) credentials, and 200 with them."""
    search = f"{tracking_uri}/api/2.0/mlflow/experiments/search?max_results=1"
    assert status_of(search) == 401
    assert status_of(search, headers=basic(f"{admin.username}:wrong-password-123")) == 401
    assert status_of(search, headers=basic(f"{admin.username}:{admin.password}")) == 200
    flows = f"{api_url}/flows/filter"
    assert status_of(flows, data=b"{}") == 401
    assert status_of(flows, data=b"{}", headers=basic("wrong-auth-string")) == 401
    assert status_of(flows, data=b"{}", headers=basic(auth_string)) == 200


def run_json(env, cwd, name, steps_override):
    stdout, stderr = simpo(
        env, cwd, "run", "--json", "--output-dir", str(cwd / name), *SMALL_RUN, "--set", steps_override
    )
    return [stdout, stderr], json.loads(stdout.strip().splitlines()[-1])


def check_champion_loader(registry, tracking_uri, summary):
    """The loader `promote-model` uses downloads and re-evaluates the champion, authenticated
    from MLFLOW_TRACKING_USERNAME/PASSWORD alone (the tracking URI holds no credentials)."""
    import mlflow

    from simpo_core.eval.settings import EvalSettings
    from tasks.promotion import evaluate_champion

    if not summary["promoted"]:  # a champion to load either way
        registry.set_registered_model_alias("simpo-policy", "champion", summary["model_version"])
    champion = registry.get_model_version_by_alias("simpo-policy", "champion")
    (heldout,) = Path(summary["run_dir"]).rglob("heldout.parquet")
    settings = EvalSettings(generation_samples=0, device="cpu")
    # MLflow resolves the champion's `models:/` source with the process-wide registry URI (in
    # the flow, register-model has set it), so point it at the server for this call only.
    previous = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    try:
        metrics = evaluate_champion(champion, heldout, settings, tracking_uri)
    finally:
        mlflow.set_tracking_uri(previous[0])
        mlflow.set_registry_uri(previous[1])
    assert 0.0 <= metrics["reward_accuracy"] <= 1.0


def check_served_deployment(env, cwd, api_url):
    """`simpo serve` registers its deployment (limit 1, CANCEL_NEW) through the secured API."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        nightly = client.read_deployment_by_name("simpo-retrain/nightly")
    assert_one_at_a_time(nightly, "CANCEL_NEW")
    served = subprocess.Popen(
        [sys.executable, "-m", "flows.cli", "serve", "--cron", "0 4 * * *"],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deployment = wait_for_deployment(api_url, "simpo-retrain/simpo-retrain-served")
    finally:
        served.terminate()
        output, _ = served.communicate(timeout=60)
    assert_one_at_a_time(deployment, "CANCEL_NEW")
    return [output]


def mlflow_records(registry, tracking_uri, folder, summary):
    """Params, tags and artifacts (files under 5 MB) of the run, and its version's tags."""
    import mlflow

    run = registry.get_run(summary["mlflow_run_id"])
    version = registry.get_model_version("simpo-policy", summary["model_version"])
    texts = [json.dumps(run.data.params), json.dumps(run.data.tags), json.dumps(version.tags)]
    local = folder / "downloaded"
    mlflow.artifacts.download_artifacts(run_id=summary["mlflow_run_id"], dst_path=str(local), tracking_uri=tracking_uri)
    return texts + [
        path.read_text(errors="ignore")
        for path in local.rglob("*")
        if path.is_file() and path.stat().st_size < 5_000_000
    ]


def prefect_records(summary):
    """Every log line and artifact of the flow run, and its parameters, read back from the Prefect API."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, LogFilter, LogFilterFlowRunId

    ids = [summary["flow_run_id"]]
    with get_client(sync_client=True) as client:
        logs, page = [], None
        while page != []:  # the API answers at most 200 lines a request
            page = client.read_logs(
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=ids)), limit=200, offset=len(logs)
            )
            logs += page
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=ids)))
        runs = [client.read_flow_run(flow_run_id) for flow_run_id in ids]
    assert logs and artifacts and all(run.state.is_completed() for run in runs)
    return (
        [log.message for log in logs]
        + [json.dumps(artifact.data) for artifact in artifacts]
        + [json.dumps(run.parameters) for run in runs]
    )
