"""QLoRA settings: a quantized training that cannot run is refused before anything loads, and
quantization enters the training identity without changing an unquantized training's."""

import pytest

from flows.params import check_sources, load_params
from simpo_core.errors import ConfigError
from simpo_core.gate.identity import resolved_training, training_identity
from simpo_core.train import quantized
from simpo_core.train.config import LoraSettings, SimPOConfig
from simpo_core.train.quantized import INSTALL_HINT, adapter_only, check_quantization
from simpo_core.train.worker import TrainJob

LORA = LoraSettings(r=8)


@pytest.fixture
def bitsandbytes_installed(monkeypatch):
    """The checks below do not depend on whether this machine has bitsandbytes."""
    monkeypatch.setattr(quantized.importlib.util, "find_spec", lambda name: object())


def test_no_quantization_needs_nothing():
    check_quantization("none", SimPOConfig(strategy="fsdp", num_processes=4))


@pytest.mark.parametrize("quantization", ["4bit", "8bit"])
def test_a_quantized_base_with_lora_in_one_process_is_accepted(bitsandbytes_installed, quantization):
    check_quantization(quantization, SimPOConfig(lora=LORA))


@pytest.mark.parametrize(
    "quantization, fields, message",
    [
        ("4bit", {}, "set model.lora"),
        ("8bit", {}, "set model.lora"),
        ("4bit", {"lora": LORA, "strategy": "fsdp"}, "strategy fsdp"),
        ("4bit", {"lora": LORA, "num_processes": 2}, "set train.num_processes 1"),
        ("8bit", {"lora": LORA, "nnodes": 2}, "2 node(s)"),
        ("2bit", {"lora": LORA}, "none, 4bit, 8bit"),
    ],
)
def test_a_quantized_training_that_cannot_run_is_refused(bitsandbytes_installed, quantization, fields, message):
    with pytest.raises(ConfigError, match="model.quantization") as error:
        check_quantization(quantization, SimPOConfig(**fields))
    assert message in str(error.value)


def test_missing_bitsandbytes_names_the_extra_to_install(monkeypatch):
    monkeypatch.setattr(quantized.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigError, match="needs bitsandbytes") as error:
        check_quantization("4bit", SimPOConfig(lora=LORA))
    assert INSTALL_HINT == "pip install 'simpo-pipeline[quantization]'" and INSTALL_HINT in str(error.value)


def test_a_training_job_is_checked_when_it_is_made(bitsandbytes_installed, tmp_path):
    with pytest.raises(ConfigError, match="set model.lora"):
        TrainJob("tiny", tmp_path / "train.jsonl", None, SimPOConfig(), quantization="4bit")
    assert TrainJob("tiny", tmp_path / "t.jsonl", None, SimPOConfig(lora=LORA), quantization="4bit").quantization


def test_the_flow_refuses_quantization_without_lora_before_any_work(bitsandbytes_installed):
    with pytest.raises(ConfigError, match="set model.lora"):
        check_sources(load_params(overrides=["model.quantization=4bit"]))
    check_sources(load_params(overrides=["model.quantization=4bit", "model.lora.r=8"]))
    with pytest.raises(ConfigError, match="model.quantization"):
        load_params(overrides=["model.quantization=3bit"])


def test_a_quantized_base_saves_its_adapter_alone():
    config = SimPOConfig(lora=LORA)
    assert config.lora.merge_on_save  # the default: a merged model
    assert adapter_only("4bit", config).lora.merge_on_save is False
    assert adapter_only("none", config) is config


def test_quantization_enters_the_identity_and_leaves_an_unquantized_one_as_it_was():
    config = SimPOConfig(lora=LORA, precision="fp32")
    before = {**config.model_dump(mode="json"), "precision": "fp32"}  # what the identity hashed until now
    assert resolved_training(config, "cpu") == resolved_training(config, "cpu", "none") == before

    def identity(quantization):
        return training_identity("data", {}, resolved_training(config, "cpu", quantization), "model", "code")

    assert len({identity("none"), identity("4bit"), identity("8bit")}) == 3
    assert identity("none") == training_identity("data", {}, before, "model", "code")


def test_4bit_computes_in_bfloat16_on_a_gpu_or_under_bf16_and_in_float32_on_a_cpu():
    import torch

    cpu = torch.device("cpu")
    assert quantized.compute_dtype(SimPOConfig(precision="fp32"), cpu) == torch.float32
    assert quantized.compute_dtype(SimPOConfig(precision="bf16-mixed"), cpu) == torch.bfloat16
    assert quantized.compute_dtype(SimPOConfig(precision="fp32"), torch.device("cuda", 0)) == torch.bfloat16
    nf4 = quantized.bitsandbytes_config("4bit", torch.float32)
    assert (nf4.load_in_4bit, nf4.bnb_4bit_quant_type, nf4.bnb_4bit_use_double_quant) == (True, "nf4", True)
    assert nf4.bnb_4bit_compute_dtype == torch.float32
    assert quantized.bitsandbytes_config("8bit", torch.float32).load_in_8bit
