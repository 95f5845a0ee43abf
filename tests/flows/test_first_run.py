"""The first run of the flow tests' small settings on an empty registry, made once for this module,
and everything read from it: the gate, the registry, the champion through pyfunc and through
`mlflow models serve`, and a killed worker's rerun, which must end with its weights."""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from flow_workspace import SMALL_RUN, FlowWorkspace
from mlflow import MlflowClient
from safetensors.torch import load_file
from servers import BIN, free_port, server
from torch.testing import assert_close

from tasks.helpers.tracking import process_mlflow_uri

FRUIT = "List some fruit words."


@pytest.fixture(scope="module")
def first_run(prefect_harness, tmp_path_factory, tiny_model_dir) -> tuple[FlowWorkspace, dict]:
    """(its workspace, its summary): it trains 60 steps, evaluates, registers v1 and promotes it.

    The tests below may start more runs in the workspace and add versions, but none may move
    the champion alias or change what the run left behind.
    """
    workspace = FlowWorkspace(tmp_path_factory.mktemp("first-run"), tiny_model_dir)
    return workspace, workspace()


def client_for(uri):
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def test_first_run_promotes_and_untrained_rerun_does_not(first_run):
    workspace, first = first_run
    assert first["promoted"] is True, first["promotion_reason"]
    assert first["heldout"]["trained"]["reward_accuracy"] > first["heldout"]["base"]["reward_accuracy"]
    client = client_for(workspace.tracking_uri)
    assert str(client.get_model_version_by_alias("simpo-policy", "champion").version) == first["model_version"]

    second = workspace("train.max_steps=0")
    assert second["promoted"] is False
    assert f"champion v{first['model_version']}" in second["promotion_reason"]
    assert str(client.get_model_version_by_alias("simpo-policy", "champion").version) == first["model_version"]
    assert str(client.get_model_version_by_alias("simpo-policy", "challenger").version) == second["model_version"]
    tags = client.get_model_version("simpo-policy", second["model_version"]).tags
    assert tags["promotion.decision"] == "rejected"

    run = client.get_run(first["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.tags["flow_run_id"] == first["flow_run_id"]
    assert "train/loss" in run.data.metrics and "eval/trained/reward_accuracy" in run.data.metrics
    assert json.loads(json.dumps(first))  # the summary is JSON-serialisable


def test_champion_serves_text_through_pyfunc(first_run):
    import mlflow

    workspace, summary = first_run
    with process_mlflow_uri(workspace.tracking_uri):  # `models:/` resolves through the process URI
        model = mlflow.pyfunc.load_model(f"models:/simpo-policy/{summary['model_version']}")
    prompts = [{"prompt": "List some fruit words."}, {"prompt": "Name a few color words for my game."}]
    replies = model.predict(prompts, params={"max_new_tokens": 8})
    assert len(replies) == 2 and all(isinstance(reply, str) for reply in replies)
    bare = model.predict(["List some fruit words."], params={"max_new_tokens": 8})  # a plain string is a prompt
    assert len(bare) == 1 and isinstance(bare[0], str)


def test_register_model_is_idempotent(first_run):
    from prefect import flow

    from tasks.helpers.tracking import Tracking
    from tasks.registry import register_model_task

    workspace, summary = first_run

    @flow
    def register_again():
        tracking = Tracking(workspace.tracking_uri, summary["mlflow_run_id"])
        return register_model_task(summary["model_dir"], "simpo-policy", tracking, summary["heldout"])

    assert register_again() == summary["model_version"]
    client = client_for(workspace.tracking_uri)
    versions = client.search_model_versions(f"name = 'simpo-policy' and run_id = '{summary['mlflow_run_id']}'")
    assert len(versions) == 1


def _invoke(url: str, payload: dict) -> list[str]:
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.loads(response.read())["predictions"]


def test_served_champion_honours_max_new_tokens(first_run, tmp_path, monkeypatch):
    import mlflow

    monkeypatch.chdir(tmp_path)  # the scoring server's working directory, not the checkout
    workspace, summary = first_run
    assert summary["promoted"], summary["promotion_reason"]
    uri = "models:/simpo-policy@champion"
    with process_mlflow_uri(workspace.tracking_uri):  # `models:/` resolves through the process URI
        signature = mlflow.models.get_model_info(uri).signature  # what the registry page shows
    assert {p.name: p.default for p in signature.params.params}["max_new_tokens"] == 64
    assert signature.inputs is None  # no schema holds both prompt strings and prompt/messages rows

    port = free_port()
    # The scoring server runs `uvicorn` from PATH: the venv's bin must be on it.
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": workspace.tracking_uri,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
    }
    command = [str(BIN / "mlflow"), "models", "serve", "-m", uri, "--env-manager", "local"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    with server(command, f"http://127.0.0.1:{port}/ping", tmp_path / "serve.log", env):
        url = f"http://127.0.0.1:{port}/invocations"
        prompts = {"dataframe_records": [{"prompt": "List some fruit words."}]}
        short = _invoke(url, {**prompts, "params": {"max_new_tokens": 3}})
        long = _invoke(url, {**prompts, "params": {"max_new_tokens": 40}})
        chat = _invoke(
            url,
            {
                "dataframe_records": [{"messages": [{"role": "user", "content": "List some fruit words."}]}],
                "params": {"max_new_tokens": 40},
            },
        )
        strings = _invoke(url, {"inputs": [FRUIT, FRUIT], "params": {"max_new_tokens": 40}})
        mixed = _invoke(
            url,
            {
                "dataframe_records": [{"prompt": FRUIT}, {"messages": [{"role": "user", "content": FRUIT}]}],
                "params": {"max_new_tokens": 40},
            },
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            _invoke(url, {"inputs": [{"text": FRUIT}]})
        refusal = refused.value.read().decode()
    # The tiny tokenizer is byte-level: 3 new tokens are at most 3 characters.
    assert len(short[0]) <= 3 < len(long[0])
    assert chat == long  # one user turn as `messages` renders exactly like `prompt`
    assert strings == mixed == long * 2  # a prompt string is that prompt, alone or mixed with rows
    assert refused.value.code == 400 and "send prompt strings" in refusal
    with process_mlflow_uri(workspace.tracking_uri):
        served = mlflow.pyfunc.load_model(uri)  # in Python, the same strings as `predict([...])`
    assert served.predict([FRUIT], params={"max_new_tokens": 40}) == long


def start_worker(workspace: FlowWorkspace, api_url: str) -> subprocess.Popen:
    """`simpo run` of the workspace's settings in a process of its own, as a worker runs it (its own
    process group, to be killed whole), against the session's Prefect API."""
    command = [
        sys.executable, "-m", "flows.cli", "run", "--json", "--output-dir", str(workspace.folder / "runs"),
        "--tracking-uri", workspace.tracking_uri, *[arg for setting in SMALL_RUN for arg in ("--set", setting)],
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PREFECT_API_URL": api_url}
    with (workspace.folder / "worker.log").open("w") as log:  # a file: a full pipe would stall the worker
        return subprocess.Popen(
            command, cwd=workspace.folder, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )


def newest_checkpoint_step(output: Path) -> int:
    from simpo_core.train.checkpoint import find_latest_checkpoint

    for folder in output.glob("trainings/*"):
        found = find_latest_checkpoint(folder)
        if found is not None:
            return int(found.name.rsplit("-", 1)[-1])
    return 0


def test_a_rerun_after_a_killed_worker_resumes_to_the_uninterrupted_weights(first_run, tiny_model_dir, tmp_path):
    """The uninterrupted training is this module's first run: the same settings, data and model."""
    from prefect.settings import PREFECT_API_URL

    _, uninterrupted = first_run
    steps = uninterrupted["train_steps"]
    workspace = FlowWorkspace(tmp_path, tiny_model_dir)
    victim = start_worker(workspace, PREFECT_API_URL.value())
    deadline = time.monotonic() + 300
    while newest_checkpoint_step(tmp_path / "runs") < 20 and victim.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    os.killpg(victim.pid, signal.SIGKILL)  # the worker dies: no retry, no cleanup
    victim.wait()
    killed_at = newest_checkpoint_step(tmp_path / "runs")
    assert 20 <= killed_at < steps, "the kill must land between a checkpoint and the end of training"

    resumed = workspace()  # the next run of the same settings, here in the test's process
    assert resumed["resumed_from_step"] >= killed_at and resumed["train_steps"] == steps
    assert resumed["training_identity"] == uninterrupted["training_identity"]
    assert uninterrupted["resumed_from_step"] is None and uninterrupted["reused_training"] is False
    weights = [load_file(Path(s["model_dir"]) / "model.safetensors") for s in (resumed, uninterrupted)]
    assert weights[0].keys() == weights[1].keys()
    for name in weights[0]:
        assert_close(weights[0][name], weights[1][name], rtol=0, atol=1e-4)
