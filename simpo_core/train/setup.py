"""What the trainer builds before its first step: the model as trained, the optimizer, the schedule."""

import functools
from typing import Any

import torch

from simpo_core.errors import ConfigError
from simpo_core.train import checkpoint
from simpo_core.train.config import SimPOConfig
from simpo_core.train.logps import model_device
from simpo_core.train.packing import enable_packing


def prepare_model(model: Any, config: SimPOConfig) -> Any:
    """LoRA adapters (when configured), gradient checkpointing, the GPU when there is one, and
    packed (padding-free) attention where the model allows it.

    Raises:
        ConfigError: nothing in the model is trainable.
    """
    if config.lora is not None and not hasattr(model, "peft_config"):
        from peft import LoraConfig, get_peft_model

        lora = config.lora
        torch.manual_seed(config.seed)  # adapter initialisation is reproducible
        model = get_peft_model(
            model,
            LoraConfig(
                r=lora.r,
                lora_alpha=lora.alpha,
                lora_dropout=lora.dropout,
                target_modules=lora.target_modules,
                task_type="CAUSAL_LM",
            ),
        )
    if not checkpoint.trainable_parameters(model):
        raise ConfigError("the model has no trainable parameters; unfreeze it or set lora")
    if config.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if torch.cuda.is_available() and model_device(model).type == "cpu":
        model = model.to("cuda")  # under torchrun: this process's GPU (set by init_distributed)
    enable_packing(model)
    return model


def build_optimizer(
    model: Any, config: SimPOConfig, total_steps: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW over the trainable parameters (decay on matrices only) and the warmup + decay schedule."""
    params = list(checkpoint.trainable_parameters(model).values())
    decay = [p for p in params if p.dim() >= 2]  # matrices decay; biases and norms do not
    no_decay = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    # The fused kernel updates each tensor in one pass, without foreach's full-size temporaries.
    fused = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
    optimizer = torch.optim.AdamW(groups, lr=config.lr, fused=fused)
    schedule = functools.partial(config.lr_multiplier, total_steps=total_steps)
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
