"""The learning-rate schedule: a linear warmup from 0, then a linear, cosine or no decay.

A free function of the step, as nanoGPT's `get_lr` and torchtune's
`get_cosine_schedule_with_warmup`, shared by SimPO training and the SFT stage.
"""

import functools
import math
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:  # torch loads with the first schedule built, not with the settings that name one
    import torch

Scheduler = Literal["linear", "cosine", "constant"]


def lr_multiplier(step: int, total_steps: int, warmup_ratio: float, scheduler: Scheduler) -> float:
    """Factor on the peak learning rate at optimizer step `step` (0-based).

    Args:
        step: optimizer steps taken so far.
        total_steps: optimizer steps of the whole run.
        warmup_ratio: fraction of `total_steps` (rounded up) that warms up linearly from 0.
        scheduler: the decay over the steps after the warmup, down to 0 (`linear`, `cosine`)
            or none (`constant`).

    Returns:
        A factor in [0, 1]; 1 at the end of the warmup, and after the last step it stays where
        the decay ended.
    """
    warmup = math.ceil(warmup_ratio * total_steps)
    if step < warmup:
        return step / warmup
    progress = min((step - warmup) / max(total_steps - warmup, 1), 1.0)
    if scheduler == "linear":
        return 1.0 - progress
    if scheduler == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return 1.0


def warmup_decay_schedule(
    optimizer: "torch.optim.Optimizer", total_steps: int, warmup_ratio: float, scheduler: Scheduler
) -> "torch.optim.lr_scheduler.LambdaLR":
    """A `LambdaLR` that multiplies the optimizer's learning rate by `lr_multiplier` at each step."""
    # A partial, not a closure: LambdaLR's state dict (in every checkpoint) stays as it was.
    multiplier = functools.partial(
        lr_multiplier, total_steps=total_steps, warmup_ratio=warmup_ratio, scheduler=scheduler
    )
    import torch

    return torch.optim.lr_scheduler.LambdaLR(optimizer, multiplier)
