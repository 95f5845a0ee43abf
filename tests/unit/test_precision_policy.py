import pytest
import torch

from simpo_core.errors import ConfigError
from simpo_core.train import precision
from simpo_core.train.config import SimPOConfig

CPU = torch.device("cpu")


def test_auto_is_fp32_on_cpu_and_bf16_mixed_on_a_bf16_gpu(monkeypatch):
    assert precision.resolve_precision("auto", CPU) == "fp32"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert precision.resolve_precision("auto", torch.device("cuda", 0)) == "bf16-mixed"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert precision.resolve_precision("auto", torch.device("cuda", 0)) == "fp32"
    assert precision.resolve_precision("bf16-pure", CPU) == "bf16-pure"  # an explicit choice is kept


def test_master_weights_are_float32_unless_bf16_pure():
    assert precision.master_dtype("fp32") == torch.float32
    assert precision.master_dtype("bf16-mixed") == torch.float32
    assert precision.master_dtype("bf16-pure") == torch.bfloat16


@pytest.mark.filterwarnings("ignore:CUDA is not available")
def test_autocast_only_for_bf16_mixed_on_cuda():
    assert not isinstance(precision.autocast("bf16-mixed", CPU), torch.autocast)  # CPU stays fp32
    assert not isinstance(precision.autocast("fp32", torch.device("cuda", 0)), torch.autocast)
    context = precision.autocast("bf16-mixed", torch.device("cuda", 0))
    assert isinstance(context, torch.autocast) and context.fast_dtype == torch.bfloat16


def test_cast_floating_keeps_integer_buffers():
    module = torch.nn.Linear(2, 2).to(torch.bfloat16)
    module.register_buffer("positions", torch.arange(3))
    precision.cast_floating(module, torch.float32)
    assert module.weight.dtype == torch.float32 and module.positions.dtype == torch.int64


def test_save_dtype_defaults_to_the_checkpoint_dtype():
    assert precision.save_dtype("checkpoint", torch.bfloat16) == torch.bfloat16
    assert precision.save_dtype("float32", torch.bfloat16) == torch.float32


def test_precision_and_save_dtype_are_checked():
    assert SimPOConfig().precision == "auto" and SimPOConfig().save_dtype == "checkpoint"
    with pytest.raises(ConfigError, match="precision"):
        SimPOConfig.from_dict({"precision": "fp16"})
    with pytest.raises(ConfigError, match="unknown key 'bf16'"):
        SimPOConfig.from_dict({"bf16": True})  # the old autocast switch is gone, not silently ignored
