"""QLoRA: LoRA adapters trained on a frozen 4-bit (NF4) or 8-bit base model (bitsandbytes).

`model.quantization: 4bit` loads the starting model's linear layers quantized, places it on
the training device at load (a quantized model is never moved or cast afterwards), readies it
with peft's `prepare_model_for_kbit_training` and trains LoRA adapters beside it. The trained
model is the adapter alone, whose base is the original (unquantized) starting model, so
evaluation, registration and serving treat it as any adapter-only LoRA run.
"""

import importlib.util
import logging
from typing import TYPE_CHECKING, Any, Literal

from simpo_core.errors import ConfigError
from simpo_core.train.config import SimPOConfig

if TYPE_CHECKING:  # torch loads lazily: the flow's parameters import this module, and `simpo --help` starts fast
    import torch

logger = logging.getLogger(__name__)

Quantization = Literal["none", "4bit", "8bit"]
QUANTIZATIONS: tuple[str, ...] = ("none", "4bit", "8bit")
INSTALL_HINT = "pip install 'simpo-pipeline[quantization]'"


def check_quantization(quantization: str, config: SimPOConfig) -> None:
    """Refuse a quantized training that cannot run, before anything is loaded.

    Args:
        quantization: `none`, `4bit` or `8bit` (`model.quantization`).
        config: the training settings; `lora`, `strategy`, `num_processes` and `nnodes` are read.

    Raises:
        ConfigError: an unknown value, no LoRA (a quantized base cannot be trained itself),
            more than one process or FSDP (bitsandbytes weights are neither sharded nor
            replicated here), or bitsandbytes not installed.
    """
    if quantization == "none":
        return
    if quantization not in QUANTIZATIONS:
        raise ConfigError(f"model.quantization must be one of {', '.join(QUANTIZATIONS)}, got {quantization!r}")
    if config.lora is None:
        raise ConfigError(
            f"model.quantization {quantization} trains LoRA adapters on a frozen quantized base: set model.lora "
            "(e.g. --set model.lora.r=16), or set model.quantization none to train every weight"
        )
    if config.strategy == "fsdp" or config.num_processes > 1 or config.nnodes > 1:
        raise ConfigError(
            f"model.quantization {quantization} trains in one process without FSDP: set train.num_processes 1, "
            f"train.nnodes 1 and train.strategy ddp (got {config.num_processes} process(es), {config.nnodes} "
            f"node(s), strategy {config.strategy}), or set model.quantization none"
        )
    if importlib.util.find_spec("bitsandbytes") is None:
        raise ConfigError(f"model.quantization {quantization} needs bitsandbytes: {INSTALL_HINT}")


def compute_dtype(config: SimPOConfig, device: "torch.device") -> "torch.dtype":
    """The dtype 4-bit layers compute in: bfloat16 on a GPU or under a bf16 precision policy,
    float32 on a CPU under fp32 (bf16 matmuls there are emulated and slower)."""
    import torch

    from simpo_core.train.precision import resolve_precision

    policy = resolve_precision(config.precision, device)
    return torch.bfloat16 if device.type == "cuda" or policy.startswith("bf16") else torch.float32


def bitsandbytes_config(quantization: str, dtype: "torch.dtype") -> Any:
    """The `transformers.BitsAndBytesConfig` of `4bit` (NF4, double quantization, computing in
    `dtype`) or `8bit` (LLM.int8)."""
    from transformers import BitsAndBytesConfig

    if quantization == "4bit":
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",  # the QLoRA paper's data type: normally distributed weights
            bnb_4bit_compute_dtype=dtype,
            bnb_4bit_use_double_quant=True,  # quantizes the scales too: about 0.4 bit less per weight
        )
    if quantization == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    raise ValueError(f"no bitsandbytes config for quantization {quantization!r}")


def load_options(quantization: str, config: SimPOConfig, device: str) -> dict[str, Any]:
    """The `load_model_and_tokenizer` arguments that load the base quantized on the training
    device (`quantization_config`, `device`); none for `quantization: none`."""
    if quantization == "none":
        return {}
    from simpo_core.models import resolve_device

    target = resolve_device(device)
    return {"quantization_config": bitsandbytes_config(quantization, compute_dtype(config, target)), "device": device}


def adapter_only(quantization: str, config: SimPOConfig) -> SimPOConfig:
    """The config a quantized base trains under: the adapter is saved alone (`lora.merge_on_save`
    off), since merging it into 4-bit or 8-bit weights would round most of it away."""
    if quantization == "none" or config.lora is None or not config.lora.merge_on_save:
        return config
    logger.info("model.quantization %s: the adapter is saved alone, on the unquantized starting model", quantization)
    return config.model_copy(update={"lora": config.lora.model_copy(update={"merge_on_save": False})})


def is_quantized(model: Any) -> bool:
    """True for a model whose linear layers bitsandbytes loaded in 4 or 8 bits (a peft model
    answers for its base)."""
    return bool(getattr(model, "is_loaded_in_4bit", False) or getattr(model, "is_loaded_in_8bit", False))


def prepare_quantized_base(model: Any, config: SimPOConfig, target: "torch.device") -> Any:
    """Ready a quantized model for LoRA: every base weight frozen, the unquantized ones (norms,
    embeddings) upcast to float32, gradient checkpointing as configured (peft's
    `prepare_model_for_kbit_training`). The model stays where it was loaded.

    Raises:
        ConfigError: the model was loaded on another device than `target`.
    """
    from peft import prepare_model_for_kbit_training

    from simpo_core.train.logps import model_device

    if model_device(model) != target:
        raise ConfigError(
            f"the quantized model was loaded on {model_device(model)} but trains on {target}: a bitsandbytes model "
            "cannot move, so load it on the training device (load_model_and_tokenizer(..., device=...))"
        )
    if hasattr(model, "peft_config"):  # adapters already there: only the base needs freezing, done by peft
        return model
    return prepare_model_for_kbit_training(
        model,
        use_gradient_checkpointing=config.gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False},
    )
