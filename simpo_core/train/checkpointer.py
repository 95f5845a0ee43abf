"""Where a SimPO training writes its checkpoints and final model, and taking a checkpoint back.

Under `strategy: fsdp` every process writes its shards (`sharded_checkpoint`: resumable on
any process count); otherwise the main process writes whole weights (`checkpoint`), which
every process holds alike. A checkpoint also holds the run's state (step, record, the config
it trained with); resuming under other settings warns, except for the settings that only
change where the work runs and is written.
"""

import logging
from pathlib import Path
from typing import Any

import torch

from simpo_core.errors import ConfigError
from simpo_core.train import checkpoint, distributed, precision, sharded_checkpoint
from simpo_core.train.config import LAYOUT_FIELDS, SimPOConfig
from simpo_core.train.parallel import Parallel

logger = logging.getLogger(__name__)

# Settings that change where the work runs and is written, never the steps it computes.
LAYOUT_ONLY = frozenset({"output_dir", *LAYOUT_FIELDS})


class Checkpointer:
    """Saves and restores one training's checkpoints in `config.output_dir`.

    Args:
        config: `output_dir`, `strategy`, `save_total_limit`, `lora` and `save_dtype` are read.
        parallel: the model's data parallelism (sharded or not).
        rank: this process's rank (0 writes what is written once).
    """

    def __init__(self, config: SimPOConfig, parallel: Parallel, rank: int) -> None:
        self.config, self.parallel, self.rank = config, parallel, rank

    def save(self, step: int, model: Any, optimizer: Any, scheduler: Any, state: dict[str, Any]) -> None:
        """Write `output_dir/checkpoint-<step>`: weights, optimizer, schedule, generators and `state`."""
        where = (self.config.output_dir, step, model, optimizer, scheduler, state)
        if self.config.strategy == "fsdp":  # every process writes its shards; resumable on any process count
            sharded_checkpoint.save_checkpoint(*where, self.config.save_total_limit)
        elif self.rank == 0:  # processes hold identical weights and optimizer states
            checkpoint.save_checkpoint(*where, self.config.save_total_limit)

    def load_latest(self, model: Any, optimizer: Any, scheduler: Any) -> dict[str, Any] | None:
        """Restore the newest complete checkpoint into `model`, `optimizer` and `scheduler` (and
        the generators); return its state (`step` included), or None when there is none.

        Raises:
            ConfigError: a whole-weights checkpoint asked to resume sharded (fsdp).
        """
        path = checkpoint.find_latest_checkpoint(self.config.output_dir)
        if path is None:
            logger.warning("no complete checkpoint in %s; starting from step 0", self.config.output_dir)
            return None
        if sharded_checkpoint.is_sharded(path):
            state = sharded_checkpoint.load_checkpoint(path, model, optimizer, scheduler)
        elif self.parallel.sharded:
            raise ConfigError(
                f"{path} holds whole (unsharded) weights; resume it with strategy: ddp or one process, "
                "or start a new output_dir"
            )
        else:
            state = checkpoint.load_checkpoint(path, model, optimizer, scheduler)
        changed = changed_settings(state.get("config", {}), self.config.model_dump(mode="json"))
        if changed:
            logger.warning("resuming with changed settings %s: data order and schedule follow the new values", changed)
        logger.info("resumed from %s (step %d)", path, state["step"])
        return state

    def save_model(self, model: Any, tokenizer: Any, path: str | Path | None, checkpoint_dtype: torch.dtype) -> str:
        """Write the final model (see `SimPOTrainer.save_model`) from the main process; return its path."""
        target = path or self.config.output_dir / "final"
        merge = self.config.lora is not None and self.config.lora.merge_on_save
        self.parallel.gather_full_model()  # under fsdp: the whole model, in the main process only
        if self.rank == 0:
            dtype = precision.save_dtype(self.config.save_dtype, checkpoint_dtype)
            checkpoint.save_model_atomic(
                model, tokenizer, target, merge_lora=merge, dtype=dtype, in_place=self.parallel.sharded
            )
        distributed.barrier()
        return str(target)


def changed_settings(saved: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """The settings (JSON dumps of `SimPOConfig`) that differ, leaving out the layout-only ones."""
    return sorted(key for key, value in saved.items() if key not in LAYOUT_ONLY and now.get(key) != value)
