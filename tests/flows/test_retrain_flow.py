"""The whole simpo-retrain flow in-process under a Prefect test harness."""

from pathlib import Path

import pytest
from mlflow import MlflowClient

from simpo_core.errors import DataError


def client_for(uri):
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def test_bad_data_fails_the_flow_and_registers_nothing(run_flow, tmp_path):
    bad = tmp_path / "bad.jsonl"
    good = '{"prompt": "List some fruit words.", "chosen": "Apple.", "rejected": "Dog."}'
    bad.write_text("\n".join([good] * 5 + ["{not json"] * 5) + "\n")
    with pytest.raises(DataError, match="failed validation"):
        run_flow(f"data.source={bad}")
    client = client_for(run_flow.tracking_uri)
    assert client.search_registered_models() == [] or not client.search_model_versions("name = 'simpo-policy'")
    runs = client.search_runs([client.get_experiment_by_name("simpo-retrain").experiment_id])
    assert runs[0].info.status == "FAILED"


def test_training_retry_resumes_from_the_checkpoint(run_flow, monkeypatch, caplog):
    from tasks import train as train_task

    original = train_task.TrainingProgress.on_checkpoint
    calls = {"failed": False}

    def fail_once_after_checkpoint(self, step, metrics):
        original(self, step, metrics)
        if step == 40 and not calls["failed"]:
            calls["failed"] = True
            raise RuntimeError("injected failure after the step-40 checkpoint")

    monkeypatch.setattr(train_task.TrainingProgress, "on_checkpoint", fail_once_after_checkpoint)
    summary = run_flow()
    assert calls["failed"]
    assert summary["train_steps"] == 60
    assert "resuming from the newest complete checkpoint" in caplog.text


def test_training_task_runs_sharded_under_torchrun_when_asked(run_flow, monkeypatch):
    """train.num_processes=2, train.strategy=fsdp: the task launches two FSDP2 processes, which
    write sharded checkpoints and one ordinary model folder that the later steps load."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    summary = run_flow(
        "train.max_steps=10",
        "train.num_processes=2",
        "train.strategy=fsdp",
        "train.logging_steps=5",
        "train.save_steps=5",
    )
    assert summary["train_steps"] == 10
    client = client_for(run_flow.tracking_uri)
    history = client.get_metric_history(summary["mlflow_run_id"], "train/loss")
    assert [metric.step for metric in history] == [5, 10]
    assert client.get_run(summary["mlflow_run_id"]).data.params["train.strategy"] == "fsdp"
    training = Path(summary["model_dir"]).parent
    assert (training / "checkpoint-5" / "sharded" / ".metadata").is_file()
    assert (training / "final" / "model.safetensors").is_file() and summary["heldout"]["trained"]["pairs"] > 0


def test_lora_run_registers_the_merged_model_and_its_resolved_config_loads_back(run_flow, tmp_path):
    import mlflow
    import yaml

    from flows.params import validate_params

    summary = run_flow("train.max_steps=3", "eval.generation_samples=0", "model.lora={r: 4, alpha: 8}")
    client = client_for(run_flow.tracking_uri)
    tags = client.get_model_version("simpo-policy", summary["model_version"]).tags
    assert tags["lora_adapter"] == "true" and tags["base_model"] == "tiny-scratch"
    assert (Path(summary["model_dir"]) / "adapter" / "adapter_config.json").exists()

    # The resolved config is an artifact that loads back with this run's overrides.
    path = mlflow.artifacts.download_artifacts(
        run_id=summary["mlflow_run_id"],
        artifact_path="config/resolved.yaml",
        dst_path=str(tmp_path / "dl"),
        tracking_uri=run_flow.tracking_uri,
    )
    params = validate_params(yaml.safe_load(open(path).read()))
    assert params.train.max_steps == 3 and params.eval.generation_samples == 0
    assert (params.model.lora.r, params.model.lora.alpha) == (4, 8)
