"""Sharded training checkpoints (`strategy: fsdp`), written with `torch.distributed.checkpoint`.

Same folder contract as `checkpoint`: `checkpoint-<step>/`, written into
`.tmp-checkpoint-<step>` and renamed when complete. Inside, `sharded/` holds the trainable
weights and AdamW state, each process writing its own shards, plus the metadata that lets
any number of processes (one included) load them back, resharded to their own layout.
Scheduler, random-generator and trainer states are small and written by the main process.

    sharded/                trainable weights and optimizer state (torch.distributed.checkpoint)
    scheduler.pt, rng.pt    as in `checkpoint`
    trainer_state.json      written last

Every process must call `save_checkpoint` and `load_checkpoint` together; the output folder
must be storage every process can reach.
"""

import json
import logging
import shutil
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from simpo_core.train import distributed
from simpo_core.train.checkpoint import STATE_FILE, complete_checkpoint, parameter_device, restore_rng_state

logger = logging.getLogger(__name__)

SHARDED_DIR = "sharded"
_METADATA = ".metadata"  # written by torch.distributed.checkpoint once every shard is on disk


def is_sharded(path: Path) -> bool:
    """Whether the checkpoint folder `path` holds sharded weights."""
    return (Path(path) / SHARDED_DIR / _METADATA).is_file()


def save_checkpoint(
    output_dir: Path,
    step: int,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    trainer_state: dict[str, Any],
    save_total_limit: int | None = None,
) -> Path:
    """Write `output_dir/checkpoint-<step>` from every process; returns its path."""
    import torch.distributed.checkpoint as dcp

    output_dir = Path(output_dir)
    final, tmp = output_dir / f"checkpoint-{step}", output_dir / f".tmp-checkpoint-{step}"
    if distributed.rank() == 0:
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
    distributed.barrier()
    with _single_process_is_intended():
        dcp.save(_training_state(model, optimizer), checkpoint_id=tmp / SHARDED_DIR, no_dist=_alone())
    if distributed.rank() == 0:
        complete_checkpoint(tmp, step, scheduler, trainer_state, save_total_limit, parameter_device(model))
        logger.info("saved sharded checkpoint %s (%d processes)", final, distributed.world_size())
    distributed.barrier()
    return final


def load_checkpoint(
    path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any
) -> dict[str, Any]:
    """Restore weights, optimizer, scheduler and random states from a sharded checkpoint,
    whatever number of processes wrote it; return the trainer state.

    Raises:
        ValueError: the checkpoint's parameters do not match the model's trainable ones.
    """
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import set_state_dict

    path = Path(path)
    state = _training_state(model, optimizer)
    try:
        with _single_process_is_intended():
            dcp.load(state, checkpoint_id=path / SHARDED_DIR, no_dist=_alone())
    except (RuntimeError, KeyError) as error:
        raise ValueError(
            f"checkpoint {path} does not match this model ({str(error).splitlines()[0][:300]}); "
            "resume with the same model and LoRA settings, or start a new output_dir"
        ) from None
    set_state_dict(
        model,
        optimizer,
        model_state_dict=state["model"],
        optim_state_dict=state["optimizer"],
        # Frozen weights (a LoRA base) are not in the checkpoint; a missing trainable one already failed above.
        options=_options(strict=False),
    )
    scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=True))
    restore_rng_state(torch.load(path / "rng.pt", weights_only=False), parameter_device(model))
    return json.loads((path / STATE_FILE).read_text(encoding="utf-8"))


def _training_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """Trainable weights and optimizer state keyed by parameter name: the same keys whether
    the model is sharded or whole, which is what lets a checkpoint change process count."""
    from torch.distributed.checkpoint.state_dict import get_state_dict

    weights, optimizer_state = get_state_dict(model, optimizer, options=_options())
    return {"model": weights, "optimizer": optimizer_state}


def _options(strict: bool = True):
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(ignore_frozen_params=True, strict=strict)  # a LoRA run stores its adapter, not the base


def _alone() -> bool:
    """No process group: one process reads or writes every shard itself."""
    return not (torch.distributed.is_available() and torch.distributed.is_initialized())


@contextmanager
def _single_process_is_intended() -> Iterator[None]:
    """One process reading or writing every shard is a supported case, not a mistake to warn of."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        yield
