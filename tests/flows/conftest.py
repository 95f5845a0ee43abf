"""Flow tests: one Prefect test harness per session, MLflow stores in temporary folders."""

import pytest


@pytest.fixture(scope="session")
def prefect_harness(tmp_path_factory):
    import os

    home = tmp_path_factory.mktemp("prefect-home")
    previous = os.environ.get("PREFECT_HOME")
    os.environ["PREFECT_HOME"] = str(home)
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=90):
        yield
    if previous is None:
        os.environ.pop("PREFECT_HOME", None)
    else:
        os.environ["PREFECT_HOME"] = previous


@pytest.fixture
def run_flow(prefect_harness, tmp_path, monkeypatch, tiny_model_dir):
    """Run simpo-retrain in-process with small settings; returns the summary.

    Runs in a temporary working directory so nothing lands in the checkout. The flow
    tests train `tiny-scratch` (the tiny model from random weights with its preset, SimPO
    plus an SFT term), whose few-step gains their numbers were set for; the model built
    once per session is reused through its cache folder. The SFT'd default `tiny` is
    covered by tests/integration/test_sft.py.
    """
    import shutil

    from flows.params import load_params

    monkeypatch.chdir(tmp_path)
    shutil.copytree(tiny_model_dir, tmp_path / ".simpo" / "models" / "tiny")
    from flows.retrain import simpo_retrain

    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"

    def run(*overrides: str, tracking: str | None = None):
        params = load_params(
            None,
            [
                "data.source=synthetic:n=400,bias=0.0,seed=1",
                "model.source=tiny-scratch",
                "train.max_steps=60",
                "train.save_steps=20",
                "eval.generation_samples=2",
                "eval.max_new_tokens=8",
                "registry.min_generation_samples=2",
                f"output_dir={tmp_path / 'runs'}",
                f"registry.tracking_uri={tracking or tracking_uri}",
                *overrides,
            ],
        )
        return simpo_retrain(params=params)

    run.tracking_uri = tracking_uri
    return run
