"""Where the flow tests run simpo-retrain in-process, and the small settings they start from."""

import shutil
from pathlib import Path

import pytest

# The small settings every flow test starts from: the tiny model from random weights with its
# preset (SimPO plus an SFT term), whose few-step gains the tests' numbers were set for.
SMALL_RUN = (
    "data.source=synthetic:n=400,bias=0.0,seed=1",
    "model.source=tiny-scratch",
    "train.max_steps=60",
    "train.save_steps=20",
    "eval.generation_samples=2",
    "eval.max_new_tokens=8",
    "registry.min_generation_samples=2",
)


class FlowWorkspace:
    """A folder with its own MLflow store (`tracking_uri`) and output folder, where calling the
    workspace runs simpo-retrain in-process with `SMALL_RUN` and the given overrides and returns
    the summary. Runs started in one workspace see each other's trainings and versions, as the
    runs of one schedule do. The tiny model built once per session is reused through the
    workspace's cache folder; the flow runs with the workspace as its working directory, so
    nothing lands in the checkout."""

    def __init__(self, folder: Path, tiny_model_dir: Path):
        self.folder = folder
        self.tracking_uri = f"sqlite:///{folder / 'mlflow.db'}"
        shutil.copytree(tiny_model_dir, folder / ".simpo" / "models" / "tiny")

    def __call__(self, *overrides: str, tracking: str | None = None) -> dict:
        from flows.params import load_params
        from flows.retrain import simpo_retrain

        settings = [
            *SMALL_RUN,
            f"output_dir={self.folder / 'runs'}",
            f"registry.tracking_uri={tracking or self.tracking_uri}",
            *overrides,
        ]
        with pytest.MonkeyPatch.context() as patch:
            patch.chdir(self.folder)
            return simpo_retrain(params=load_params(None, settings))
