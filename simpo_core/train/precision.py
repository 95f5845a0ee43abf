"""Numeric precision of training: which dtype the weights and optimizer state are held in,
which dtype the matmuls run in, and which dtype the saved model is written in.

    policy        master weights + AdamW state    forward/backward compute
    fp32          float32                         float32            (CPU default)
    bf16-mixed    float32                         bfloat16 autocast  (CUDA default)
    bf16-pure     bfloat16                        bfloat16           (opt-in)

Hub checkpoints usually ship in bfloat16. AdamW on bfloat16 weights rounds every update to
the weight's bfloat16 spacing (8 significant bits: about 0.4 % of the weight), so at the
paper's learning rates (3e-7 to 1e-6) most updates vanish. `fp32` and `bf16-mixed` therefore
upcast the checkpoint to float32 before the optimizer sees it; `bf16-pure` halves the memory
of weights and optimizer state and accepts that loss (it suits large learning rates only).
"""

import logging
from contextlib import nullcontext
from typing import Any

import torch

from simpo_core.train.config import Precision, SaveDtype

logger = logging.getLogger(__name__)

_MASTER_DTYPE = {"fp32": torch.float32, "bf16-mixed": torch.float32, "bf16-pure": torch.bfloat16}


def resolve_precision(precision: Precision, device: torch.device) -> str:
    """The concrete policy: `auto` is `bf16-mixed` on a CUDA device that supports bfloat16,
    `fp32` everywhere else (CPU autocast is slower than float32 on most CPUs)."""
    if precision != "auto":
        return precision
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return "bf16-mixed"
    return "fp32"


def master_dtype(precision: str) -> torch.dtype:
    """The dtype that weights (and so AdamW's state) are held in under a concrete policy."""
    return _MASTER_DTYPE[precision]


def autocast(precision: str, device: torch.device) -> Any:
    """The compute context of one forward: bfloat16 autocast under `bf16-mixed`, else none.

    Autocast stays off on CPU even under `bf16-mixed`: CPU autocast covers few ops and is
    usually slower than float32; the weights stay float32 there, so nothing is lost.
    """
    if precision == "bf16-mixed" and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


def floating_dtype(model: torch.nn.Module) -> torch.dtype:
    """The dtype of the model's first floating-point parameter (float32 when there is none)."""
    return next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)


def cast_floating(model: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    """Cast the floating-point parameters and buffers of `model` to `dtype`, in place.

    Integer buffers (position ids) keep their dtype; a model already in `dtype` is untouched.
    """
    before = floating_dtype(model)
    if any(p.is_floating_point() and p.dtype != dtype for p in model.parameters()):
        model.to(dtype)
        logger.info("weights cast from %s to %s for training", before, dtype)
    return model


def save_dtype(setting: SaveDtype, checkpoint_dtype: torch.dtype) -> torch.dtype:
    """The dtype a trained model is written in: the starting checkpoint's own by default."""
    if setting == "checkpoint":
        return checkpoint_dtype
    return getattr(torch, setting)
