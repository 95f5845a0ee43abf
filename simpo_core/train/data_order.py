"""Which pairs each optimizer step of a SimPO training sees: a pure function of (seed, step).

Micro-batch m of the stream is slice m % per_epoch of the shuffled pair order of epoch
m // per_epoch, and that order is a function of (seed, epoch) only. Optimizer step s
consumes micro-batches [s·A, (s+1)·A) with A = gradient_accumulation_steps, so the step
number alone is the data position, and a resumed run sees exactly the batches it would have
seen.
"""

import math

import torch

from simpo_core.train.config import SimPOConfig


class DataOrder:
    """The pair indices of every optimizer step.

    Args:
        num_pairs: training pairs.
        config: `batch_size` (pairs per micro-batch; the last one of an epoch may be short),
            `gradient_accumulation_steps` (micro-batches per optimizer step), `seed` (epoch e
            is shuffled with `seed + e`), `max_steps` and `num_epochs` are read.
    """

    def __init__(self, num_pairs: int, config: SimPOConfig) -> None:
        self.num_pairs, self.batch_size, self.seed = num_pairs, config.batch_size, config.seed
        self.accumulation = config.gradient_accumulation_steps
        self.max_steps, self.num_epochs = config.max_steps, config.num_epochs
        self._order: tuple[int, list[int]] = (-1, [])  # the last epoch's shuffle, kept: steps ask in order

    @property
    def micro_batches_per_epoch(self) -> int:
        return math.ceil(self.num_pairs / self.batch_size)

    def total_steps(self) -> int:
        """Optimizer steps of the run: `max_steps` when set (>= 0), else `num_epochs` worth of micro-batches."""
        if self.max_steps >= 0:
            return self.max_steps
        return math.ceil(self.num_epochs * self.micro_batches_per_epoch / self.accumulation)

    def step_indices(self, step: int) -> tuple[list[int], float]:
        """The pair indices of optimizer step `step` (0-based) and the epoch reached after it."""
        per_epoch, size = self.micro_batches_per_epoch, self.batch_size
        indices: list[int] = []
        for micro in range(step * self.accumulation, (step + 1) * self.accumulation):
            epoch, slot = divmod(micro, per_epoch)
            indices.extend(self._epoch_order(epoch)[slot * size : (slot + 1) * size])
        return indices, (step + 1) * self.accumulation / per_epoch

    def _epoch_order(self, epoch: int) -> list[int]:
        """The shuffled pair order of `epoch`: a function of (seed, epoch) only."""
        if self._order[0] != epoch:
            generator = torch.Generator().manual_seed(self.seed + epoch)
            self._order = (epoch, torch.randperm(self.num_pairs, generator=generator).tolist())
        return self._order[1]
