"""What the trainer builds before its first step: the model as trained, the optimizer, the schedule."""

from typing import Any

import torch

from simpo_core.errors import ConfigError
from simpo_core.train import checkpoint, precision, quantized
from simpo_core.train.config import SimPOConfig
from simpo_core.train.logps import model_device
from simpo_core.train.packing import enable_packing
from simpo_core.train.schedule import warmup_decay_schedule
from simpo_core.train.sharded_start import add_adapters, sharded_start


def prepare_model(model: Any, config: SimPOConfig, device: str | torch.device | None = None) -> tuple[Any, str]:
    """The model as trained: on its device, in the precision policy's master dtype, with LoRA
    adapters (when configured), gradient checkpointing and packed (padding-free) attention
    where the model allows it. A quantized model (QLoRA) stays where it was loaded, its
    quantized weights as they are (`simpo_core.train.quantized`).

    Args:
        model: a transformers causal LM (or a peft model), in any dtype on any device.
        config: `lora`, `gradient_checkpointing` and `precision` are read.
        device: where to train (`cpu`, `cuda`, `cuda:N`, a `torch.device`); None keeps a model
            already on a GPU there and moves a CPU model to the GPU when there is one.

    Returns:
        `(model, precision)`: the prepared model and the concrete policy (`fp32`, `bf16-mixed`
        or `bf16-pure`).

    Raises:
        ConfigError: nothing in the model is trainable, or the device does not exist here.
    """
    target = _training_device(model, device)
    start = sharded_start(model)  # built empty: its values arrive once it is sharded (`sharded_start`)
    if start is not None:
        start.device = target
    policy = precision.resolve_precision(config.precision, target)
    if quantized.is_quantized(model):  # placed at load: its 4-bit or 8-bit weights are never moved or cast
        model = quantized.prepare_quantized_base(model, config, target)
    else:
        if model_device(model) != target and start is None:
            model = model.to(target)  # before the upcast: a bf16 checkpoint's float32 copy lands on the GPU once
        # Before the adapters are added: peft keeps LoRA weights in float32 even on a bf16 base.
        model = precision.cast_floating(model, precision.master_dtype(policy))
    if config.lora is not None and not hasattr(model, "peft_config"):
        model = _add_lora(model, config) if start is None else add_adapters(model, lambda m: _add_lora(m, config))
    if not checkpoint.trainable_parameters(model):
        raise ConfigError("the model has no trainable parameters; unfreeze it or set lora")
    if config.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    enable_packing(model)
    return model, policy


def _training_device(model: Any, device: str | torch.device | None) -> torch.device:
    if device is not None:
        from simpo_core.models import resolve_device

        return resolve_device(str(device))
    current = model_device(model)
    if current.type == "meta":  # an empty model trains where a loaded one would: loaded on the CPU
        current = torch.device("cpu")
    if torch.cuda.is_available() and current.type == "cpu":
        return torch.device("cuda", torch.cuda.current_device())  # under torchrun: this process's GPU
    return current


def _add_lora(model: Any, config: SimPOConfig) -> Any:
    from peft import LoraConfig, get_peft_model

    lora = config.lora
    torch.manual_seed(config.seed)  # adapter initialisation is reproducible
    return get_peft_model(
        model,
        LoraConfig(
            r=lora.r,
            lora_alpha=lora.alpha,
            lora_dropout=lora.dropout,
            target_modules=lora.target_modules,
            task_type="CAUSAL_LM",
        ),
    )


def build_optimizer(
    model: Any, config: SimPOConfig, total_steps: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW over the trainable parameters (decay on matrices only) and the warmup + decay schedule."""
    optimizer = build_adamw(model, config.lr, config.weight_decay)
    return optimizer, warmup_decay_schedule(optimizer, total_steps, config.warmup_ratio, config.lr_scheduler)


def build_adamw(model: Any, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW over the trainable parameters; `weight_decay` on matrices only."""
    params = list(checkpoint.trainable_parameters(model).values())
    decay = [p for p in params if p.dim() >= 2]  # matrices decay; biases and norms do not
    no_decay = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    # The fused kernel updates each tensor in one pass, without foreach's full-size temporaries.
    fused = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
    return torch.optim.AdamW(groups, lr=lr, fused=fused)
