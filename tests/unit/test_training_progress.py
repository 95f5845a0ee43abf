"""The train task's listener turns each trainer event into its MLflow record (a fake client, no
Prefect run: the artifact and logger calls are replaced)."""

import logging

import pytest

from tasks import train as train_task
from tasks.helpers.tracking import Tracking


class FakeClient:
    def __init__(self):
        self.tags, self.metrics = {}, []

    def set_tag(self, run_id, key, value):
        self.tags[(run_id, key)] = value

    def log_batch(self, run_id, metrics):
        self.metrics += [(run_id, metric.key, metric.value, metric.step) for metric in metrics]


@pytest.fixture
def progress(monkeypatch):
    client, artifacts = FakeClient(), []
    monkeypatch.setattr(Tracking, "client", lambda self: client)
    monkeypatch.setattr(train_task, "get_run_logger", lambda: logging.getLogger("train-task-test"))
    monkeypatch.setattr(train_task, "create_progress_artifact", lambda *args, **kwargs: "progress-id")
    monkeypatch.setattr(train_task, "update_progress_artifact", lambda *args: artifacts.append(args))
    monkeypatch.setattr(train_task, "create_markdown_artifact", lambda text, **kwargs: artifacts.append(kwargs["key"]))
    return train_task.TrainingProgress(Tracking("sqlite:///unused.db", "run-1"), total_steps=10), client, artifacts


def test_logged_metrics_reach_the_run_and_move_the_progress(progress):
    listener, client, artifacts = progress
    listener.on_log(5, {"step": 5, "loss": 0.5, "lr": 1e-3})
    assert sorted(client.metrics) == [("run-1", "train/loss", 0.5, 5), ("run-1", "train/lr", 1e-3, 5)]
    assert artifacts == [("progress-id", 50.0)]


def test_a_monitor_warning_and_an_early_stop_become_tags(progress):
    listener, client, artifacts = progress
    listener.on_warning(4, "margin_stall", "the reward margin stayed within 0.001")
    listener.on_early_stop(6, "stopping early at step 6/10: no improvement")
    assert client.tags == {
        ("run-1", "train.warning.margin_stall"): "step 4: the reward margin stayed within 0.001",
        ("run-1", "train.early_stopped_at"): "6",
    }
    assert artifacts == ["training-warning-margin-stall"]


def test_the_attention_path_and_each_processs_peak_memory_reach_the_run(monkeypatch):
    from pathlib import Path

    from simpo_core.train.training_folder import TrainResult

    client = FakeClient()
    monkeypatch.setattr(Tracking, "client", lambda self: client)
    result = TrainResult(Path("final"), 3, [], packed_attention_path="loop", peak_memory_bytes=[3 * 2**20, 5 * 2**19])
    train_task.log_training_facts(result, Tracking("sqlite:///unused.db", "run-1"))
    assert client.tags == {("run-1", "train.packed_attention_path"): "loop"}
    assert sorted((key, value) for _, key, value, _ in client.metrics) == [
        ("train/packed_attention_fallbacks", 0.0),
        ("train/peak_memory_mb/rank0", 3.0),
        ("train/peak_memory_mb/rank1", 2.5),
    ]
