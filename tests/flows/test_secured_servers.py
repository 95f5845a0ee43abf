"""Two concurrent `simpo run`s, `simpo rollback`, `simpo deploy`, `simpo serve` and the champion
loader against real Prefect and MLflow servers on 127.0.0.1, both secured.

MLflow runs its basic-auth app and Prefect requires an API auth string; both refuse a request
without credentials, the pipeline authenticates from the environment alone, and neither secret
shows in what the runs leave behind (params, tags, summaries, logs, artifacts, output). One pair
of servers serves every step: each server start and each `simpo` process costs seconds.
"""

import json
import os
import secrets
import subprocess
import sys
import time
import urllib.request
from base64 import b64encode
from pathlib import Path
from urllib.error import HTTPError

import pytest
from servers import BasicAuth, mlflow_server, prefect_api, prefect_server

pytestmark = pytest.mark.slow

SMALL_RUN = [
    "--data",
    "synthetic:n=2000,bias=0.0,seed=1",  # 241 held-out pairs: 100 steps win the gate, 5 do not
    "--model",
    "tiny-scratch",
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


def test_concurrent_runs_rollback_deploy_and_serve_against_secured_servers(tmp_path, monkeypatch):
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
            # One thread each: two 2-thread torch processes on 2 cores spin-wait each other to a crawl.
            "OMP_NUM_THREADS": "1",
        }
        for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
            monkeypatch.setenv(name, env[name])  # the test's own MLflow client authenticates the same way

        # Both finish, each registers its own version, and `champion` ends on the better one.
        strong, weak = start_run(env, tmp_path, "strong", 100), start_run(env, tmp_path, "weak", 5)
        (strong_output, strong_summary), (weak_output, weak_summary) = finish(strong), finish(weak)
        summaries, outputs = [strong_summary, weak_summary], strong_output + weak_output
        from mlflow import MlflowClient

        registry = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        best = check_one_version_each_and_the_better_champion(registry, summaries)
        outputs += check_rollback(env, tmp_path, registry, best, next(s for s in summaries if s is not best))
        check_champion_loader(registry, tracking_uri, best)

        outputs += simpo(env, tmp_path, "deploy", timeout=300)
        with prefect_api(api_url, auth_string):  # the test's own Prefect client, secured
            check_flow_runs(summaries)
            check_deployments()
            outputs += check_served_deployment(env, tmp_path, api_url)
            exposed = outputs + [json.dumps(summary) for summary in summaries]
            exposed += mlflow_records(registry, tracking_uri, tmp_path, summaries)
            exposed += prefect_records(summaries)
    for text in exposed:
        assert admin.password not in text and auth_string not in text


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


def start_run(env, cwd, name, steps):
    command = [sys.executable, "-m", "flows.cli", "run", "--json", "--output-dir", str(cwd / name), *SMALL_RUN]
    command += ["--set", f"train.max_steps={steps}"]
    return subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(process):
    """The output of a started `simpo run --json` and its summary, once it has succeeded."""
    stdout, stderr = process.communicate(timeout=900)
    assert process.returncode == 0, stderr[-3000:]
    return [stdout, stderr], json.loads(stdout.strip().splitlines()[-1])


def check_one_version_each_and_the_better_champion(registry, summaries):
    """Each run registered its own version; `champion` is the better one, which is returned."""
    versions = {s["model_version"]: registry.get_model_version("simpo-policy", s["model_version"]) for s in summaries}
    assert len(versions) == 2
    for summary in summaries:
        assert versions[summary["model_version"]].run_id == summary["mlflow_run_id"]
    best = max(summaries, key=lambda s: (s["heldout"]["trained"]["reward_accuracy"], s["train_steps"]))
    champion = registry.get_model_version_by_alias("simpo-policy", "champion")
    assert str(champion.version) == best["model_version"], [s["promotion_reason"] for s in summaries]
    return best


def check_rollback(env, cwd, registry, champion, other):
    """`simpo rollback` against the server: pin another version, then go back; both recorded."""
    outputs = []

    def simpo_json(*args):
        stdout, stderr = simpo(env, cwd, *args, "--json")
        outputs.extend([stdout, stderr])
        return json.loads(stdout.strip().splitlines()[-1])

    pinned = simpo_json("rollback", "--to", other["model_version"], "--reason", "pin the other version")
    assert pinned["previous"] == champion["model_version"]
    back = simpo_json("rollback", "--reason", "the pin was a mistake")
    assert back["version"] == champion["model_version"]
    assert str(registry.get_model_version_by_alias("simpo-policy", "champion").version) == champion["model_version"]
    shown = simpo_json("registry")
    assert [event["action"] for event in shown["history"]] == ["promoted", "rollback", "rollback"]
    assert registry.get_model_version("simpo-policy", other["model_version"]).tags["champion.by"]
    return outputs


def check_champion_loader(registry, tracking_uri, champion_summary):
    """The loader `promote-model` uses downloads and re-evaluates the champion, authenticated
    from MLFLOW_TRACKING_USERNAME/PASSWORD alone (the tracking URI holds no credentials)."""

    from simpo_core.eval.settings import EvalSettings
    from tasks.promotion import evaluate_champion

    champion = registry.get_model_version_by_alias("simpo-policy", "champion")
    assert str(champion.version) == champion_summary["model_version"]
    (heldout,) = Path(champion_summary["run_dir"]).rglob("heldout.parquet")
    settings = EvalSettings(generation_samples=0, device="cpu")
    # Nothing points MLflow's process-wide URIs at the server first: the loader does that itself.
    metrics = evaluate_champion(champion, heldout, settings, tracking_uri)
    assert 0.0 <= metrics["reward_accuracy"] <= 1.0


def check_flow_runs(summaries):
    """Both flow runs completed on the server, named after their data and model."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        runs = [client.read_flow_run(s["flow_run_id"]) for s in summaries]
    assert all(run.state.is_completed() for run in runs)
    assert all(run.name.startswith("synthetic-on-tiny") for run in runs)


def check_deployments():
    """What `simpo deploy` registered: the nightly schedule and the smoke run, one run at a time."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        nightly = client.read_deployment_by_name("simpo-retrain/nightly")
        smoke = client.read_deployment_by_name("simpo-retrain/smoke")
    assert nightly.work_pool_name == smoke.work_pool_name == "simpo-process"
    assert nightly.schedules[0].schedule.cron == "0 3 * * *"
    assert smoke.parameters["params"]["train"]["max_steps"] == 20
    assert_one_at_a_time(nightly, "CANCEL_NEW")
    assert_one_at_a_time(smoke, "ENQUEUE")


def check_served_deployment(env, cwd, api_url):
    """`simpo serve` registers its deployment (its cron, limit 1, CANCEL_NEW) through the secured API."""
    served = subprocess.Popen(
        [sys.executable, "-m", "flows.cli", "serve", "--cron", "0 4 * * *"],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deployment = wait_for_deployment("simpo-retrain/simpo-retrain-served")
    finally:
        served.terminate()
        output, _ = served.communicate(timeout=60)
    assert deployment.schedules[0].schedule.cron == "0 4 * * *"
    assert_one_at_a_time(deployment, "CANCEL_NEW")
    return [output]


def assert_one_at_a_time(deployment, strategy):
    """The server holds the deployment's concurrency limit of 1 and its collision strategy."""
    assert deployment.global_concurrency_limit is not None, deployment.name
    assert deployment.global_concurrency_limit.limit == 1
    assert deployment.concurrency_options.collision_strategy.value == strategy


def wait_for_deployment(name, timeout=120.0):
    """The deployment `name` once the server has it (`simpo serve` registers it as it starts)."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while True:
            try:
                return client.read_deployment_by_name(name)
            except ObjectNotFound:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)


def mlflow_records(registry, tracking_uri, folder, summaries):
    """Params, tags and artifacts (files under 5 MB) of each run, and its version's tags."""
    import mlflow

    texts = []
    for summary in summaries:
        run = registry.get_run(summary["mlflow_run_id"])
        version = registry.get_model_version("simpo-policy", summary["model_version"])
        texts += [json.dumps(run.data.params), json.dumps(run.data.tags), json.dumps(version.tags)]
        local = folder / "downloaded" / summary["mlflow_run_id"]
        mlflow.artifacts.download_artifacts(run_id=run.info.run_id, dst_path=str(local), tracking_uri=tracking_uri)
        texts += [
            path.read_text(errors="ignore")
            for path in local.rglob("*")
            if path.is_file() and path.stat().st_size < 5_000_000
        ]
    return texts


def prefect_records(summaries):
    """Every log line and artifact of the flow runs, and their parameters, read back from the Prefect API."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, LogFilter, LogFilterFlowRunId

    ids = [summary["flow_run_id"] for summary in summaries]
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
    assert {str(log.flow_run_id) for log in logs} == set(ids)  # both runs' logs were read
    return (
        [log.message for log in logs]
        + [json.dumps(artifact.data) for artifact in artifacts]
        + [json.dumps(run.parameters) for run in runs]
    )
