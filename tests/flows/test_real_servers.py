"""Two concurrent `simpo run`s, then `simpo deploy` and `simpo serve`, against real Prefect and MLflow servers on 127.0.0.1."""

import json
import os
import subprocess
import sys

import pytest
from servers import mlflow_server, prefect_server

pytestmark = pytest.mark.slow


def start_run(tmp_path, env, name, steps):
    command = [
        sys.executable,
        "-m",
        "flows.cli",
        "run",
        "--json",
        "--output-dir",
        str(tmp_path / name),
        "--data",
        "synthetic:n=400,seed=2",
        "--model",
        "tiny-scratch",
        "--set",
        f"train.max_steps={steps}",
        "--set",
        "eval.generation_samples=2",
        "--set",
        "eval.max_new_tokens=8",
        "--set",
        "registry.min_generation_samples=2",
    ]
    return subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(process):
    stdout, stderr = process.communicate(timeout=900)
    assert process.returncode == 0, stderr[-3000:]
    return json.loads(stdout.strip().splitlines()[-1])


def test_concurrent_runs_on_shared_servers(tmp_path):
    """Both finish, each registers its own version, and `champion` ends on the better one."""
    with mlflow_server(tmp_path) as (tracking_uri, _), prefect_server(tmp_path) as api_url:
        # One thread each: two 2-thread torch processes on 2 cores spin-wait each other to a crawl.
        env = {**os.environ, "PREFECT_API_URL": api_url, "MLFLOW_TRACKING_URI": tracking_uri, "OMP_NUM_THREADS": "1"}
        strong, weak = start_run(tmp_path, env, "strong", 300), start_run(tmp_path, env, "weak", 20)
        summaries = [finish(strong), finish(weak)]

        from mlflow import MlflowClient
        from prefect.client.orchestration import get_client
        from prefect.settings import PREFECT_API_URL, temporary_settings

        registry = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        versions = {
            s["model_version"]: registry.get_model_version("simpo-policy", s["model_version"]) for s in summaries
        }
        assert len(versions) == 2
        for summary in summaries:
            assert versions[summary["model_version"]].run_id == summary["mlflow_run_id"]
        best = max(summaries, key=lambda s: (s["heldout"]["trained"]["reward_accuracy"], s["train_steps"]))
        champion = registry.get_model_version_by_alias("simpo-policy", "champion")
        assert str(champion.version) == best["model_version"], [s["promotion_reason"] for s in summaries]
        check_rollback(env, tmp_path, registry, best, next(s for s in summaries if s is not best))

        with temporary_settings({PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
            runs = [client.read_flow_run(s["flow_run_id"]) for s in summaries]
        assert all(run.state.is_completed() for run in runs)
        assert all(run.name.startswith("synthetic-on-tiny") for run in runs)

        deploy = subprocess.run(
            [sys.executable, "-m", "flows.cli", "deploy"],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert deploy.returncode == 0, deploy.stderr[-3000:]
        with temporary_settings({PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
            nightly = client.read_deployment_by_name("simpo-retrain/nightly")
            smoke = client.read_deployment_by_name("simpo-retrain/smoke")
        assert nightly.work_pool_name == smoke.work_pool_name == "simpo-process"
        assert nightly.schedules[0].schedule.cron == "0 3 * * *"
        assert smoke.parameters["params"]["train"]["max_steps"] == 20
        assert_one_at_a_time(nightly, "CANCEL_NEW")
        assert_one_at_a_time(smoke, "ENQUEUE")

        served = subprocess.Popen(
            [sys.executable, "-m", "flows.cli", "serve", "--cron", "0 4 * * *"],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deployment = wait_for_deployment(api_url, "simpo-retrain/simpo-retrain-served")
        finally:
            served.terminate()
            served.wait(timeout=60)
        assert deployment.schedules[0].schedule.cron == "0 4 * * *"
        assert_one_at_a_time(deployment, "CANCEL_NEW")


def assert_one_at_a_time(deployment, strategy):
    """The server holds the deployment's concurrency limit of 1 and its collision strategy."""
    assert deployment.global_concurrency_limit is not None, deployment.name
    assert deployment.global_concurrency_limit.limit == 1
    assert deployment.concurrency_options.collision_strategy.value == strategy


def wait_for_deployment(api_url, name, timeout=120.0):
    import time

    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound
    from prefect.settings import PREFECT_API_URL, temporary_settings

    deadline = time.monotonic() + timeout
    with temporary_settings({PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
        while True:
            try:
                return client.read_deployment_by_name(name)
            except ObjectNotFound:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)


def check_rollback(env, cwd, registry, champion, other):
    """`simpo rollback` against the server: pin another version, then go back; both recorded."""

    def simpo(*args):
        done = subprocess.run(
            [sys.executable, "-m", "flows.cli", *args, "--json"], env=env, cwd=cwd, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads(done.stdout.strip().splitlines()[-1])

    pinned = simpo("rollback", "--to", other["model_version"], "--reason", "pin the other version")
    assert pinned["previous"] == champion["model_version"]
    back = simpo("rollback", "--reason", "the pin was a mistake")
    assert back["version"] == champion["model_version"]
    assert str(registry.get_model_version_by_alias("simpo-policy", "champion").version) == champion["model_version"]
    shown = simpo("registry")
    assert [event["action"] for event in shown["history"]] == ["promoted", "rollback", "rollback"]
    assert registry.get_model_version("simpo-policy", other["model_version"]).tags["champion.by"]
