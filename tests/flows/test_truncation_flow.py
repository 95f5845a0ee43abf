"""One in-process run: the flow audits with the training limits and records the truncation count,
and leaves MLflow's process-wide URIs as it found them."""

import os

import mlflow
import pytest
from mlflow import MlflowClient

from tasks.helpers.tracking import MLFLOW_URI_VARIABLES


def process_uris() -> dict:
    return {
        "tracking": mlflow.get_tracking_uri(),
        "registry": mlflow.get_registry_uri(),
        **{name: os.environ.get(name) for name in MLFLOW_URI_VARIABLES},
    }


@pytest.fixture(scope="module")
def truncated_run(prefect_harness, tmp_path_factory, tiny_model_dir):
    """(workspace, summary, MLflow's process URIs before, after) of a run with short limits."""
    from flow_workspace import FlowWorkspace

    workspace = FlowWorkspace(tmp_path_factory.mktemp("truncation"), tiny_model_dir)
    with pytest.MonkeyPatch.context() as patch:
        # The environment names another store, as a user's shell may: the run's own
        # `registry.tracking_uri` wins for every call, MLflow's that read the process URI too.
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{workspace.folder / 'elsewhere.db'}")
        before = process_uris()
        summary = workspace(
            "train.max_steps=4", "train.max_length=96", "train.max_prompt_length=48", "eval.generation_samples=0"
        )
        return workspace, summary, before, process_uris()


def test_the_run_summary_and_metrics_count_the_pairs_training_cuts(truncated_run):
    workspace, summary, _, _ = truncated_run
    truncated = summary["audit"]["truncated"]
    assert (truncated["max_length"], truncated["max_prompt_length"]) == (96, 48)  # train's limits
    assert truncated["pairs"] > 0 and truncated["fraction"] == summary["audit"]["truncated_fraction"]
    run = MlflowClient(tracking_uri=workspace.tracking_uri).get_run(summary["mlflow_run_id"])
    assert run.data.metrics["audit/truncated_fraction"] == truncated["fraction"]
    assert run.data.metrics["audit/truncated_pairs"] == truncated["pairs"]
    heldout = summary["heldout"]["trained"]
    assert heldout["length_sides_measured"] == "before truncation" and heldout["truncated_pairs"] > 0
    assert heldout["length_controlled_pairs"] == heldout["pairs_chosen_longer"] + heldout["pairs_chosen_shorter"]


def test_the_run_leaves_mlflow_process_uris_as_it_found_them(truncated_run):
    """A process that runs flows against different stores (a worker, this test session) must not
    send a later `MlflowClient()` to the last run's registry, nor its subprocesses."""
    workspace, summary, before, after = truncated_run
    assert summary["model_version"] == "1"  # it registered, and logged system metrics while training
    assert not (workspace.folder / "elsewhere.db").exists()
    assert after == before
    assert workspace.tracking_uri not in (after["registry"], after["MLFLOW_REGISTRY_URI"])
