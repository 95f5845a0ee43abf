import pytest
import torch

from simpo_core.errors import ConfigError
from simpo_core.models import resolve_device


@pytest.fixture
def two_fake_gpus(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)


def test_auto_is_the_cpu_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(ConfigError, match="no CUDA GPU; set model.device to auto or cpu"):
        resolve_device("cuda")


def test_gpu_settings_name_a_gpu_that_exists(two_fake_gpus):
    assert resolve_device("auto") == torch.device("cuda", 0)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    assert resolve_device("cpu") == torch.device("cpu")  # an explicit cpu wins over a GPU
    with pytest.raises(ConfigError, match="has 2 GPU"):
        resolve_device("cuda:2")


def test_unknown_device_names_the_choices():
    with pytest.raises(ConfigError, match="auto, cpu, cuda or cuda:N"):
        resolve_device("gpu")


def test_device_setting_is_checked_where_users_write_it(tmp_path):
    from flows.params import load_params
    from simpo_core.eval.settings import EvalSettings
    from simpo_core.train.config import SimPOConfig
    from simpo_core.train.worker import TrainJob, read_job

    assert load_params(None, ["model.device=cuda:1"]).model.device == "cuda:1"
    with pytest.raises(ConfigError, match="model.device"):
        load_params(None, ["model.device=gpu0"])
    with pytest.raises(ConfigError, match="device"):
        EvalSettings.from_values({"device": "tpu"})
    job = TrainJob("tiny", tmp_path / "train.jsonl", None, SimPOConfig(), device="cuda:1")
    assert read_job(job.write(tmp_path / "job.yaml")).device == "cuda:1"


def test_the_flow_hands_model_device_and_remote_code_to_evaluation():
    from flows.params import load_params
    from simpo_core.eval.settings import EvalSettings

    params = load_params(None, ["model.device=cpu", "model.trust_remote_code=true"])
    settings = EvalSettings.for_training(
        params.eval, params.train, device=params.model.device, trust_remote_code=params.model.trust_remote_code
    )
    assert (settings.device, settings.trust_remote_code) == ("cpu", True)
