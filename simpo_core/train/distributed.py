"""The process group of a run started by `torchrun` (gloo on CPU, nccl on GPU).

The effective batch does not change with the number of processes: optimizer step s still
consumes the same `batch_size × gradient_accumulation_steps` pairs, and each of the N
processes takes a contiguous 1/N of them (in micro-batches of at most `batch_size`). Every
micro-batch divides by the counts of the whole step, so summing gradients (DDP or FSDP2,
`parallel`) and metrics (`sum_metrics`) over the processes gives exactly the one-process
step: same loss, same gradients, same weights, up to float summation order.
"""

import logging
import os
import shutil
import sys
from collections.abc import Sequence
from typing import Any, TypeVar

import torch

logger = logging.getLogger(__name__)

T = TypeVar("T")


def world_size() -> int:
    """Processes in this run: 1 unless started by torchrun (or an initialised process group)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size()
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    """This process's rank (0 when not distributed)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank()
    return int(os.environ.get("RANK", "0"))


def in_group() -> bool:
    """This process belongs to an initialised process group (it runs under torchrun)."""
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def init_distributed() -> int:
    """Join the process group torchrun describes in the environment; return the world size.

    On CUDA each process uses GPU `LOCAL_RANK` with nccl; on CPU gloo. A no-op when the
    group already exists, and for a single process that torchrun did not start.
    """
    started_by_torchrun = "TORCHELASTIC_RUN_ID" in os.environ and "MASTER_ADDR" in os.environ
    if in_group() or not (started_by_torchrun or int(os.environ.get("WORLD_SIZE", "1")) > 1):
        return world_size()
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        backend = "nccl"
    else:
        backend = "gloo"
    torch.distributed.init_process_group(backend=backend)
    logger.info("joined a %d-process %s group as rank %d", world_size(), backend, rank())
    return world_size()


def shard(items: Sequence[T], index: int, count: int) -> list[T]:
    """Contiguous part `index` of `count` nearly equal parts of `items` (sizes differ by ≤ 1)."""
    return list(items[len(items) * index // count : len(items) * (index + 1) // count])


def broadcast_parameters(model: torch.nn.Module) -> None:
    """Give every process rank 0's parameters and buffers (a model built from random weights
    would otherwise start differently in each process)."""
    if world_size() <= 1:
        return
    with torch.no_grad():
        for tensor in [*model.parameters(), *model.buffers()]:
            torch.distributed.broadcast(tensor.data, src=0)


def check_replicas_agree(model: torch.nn.Module) -> None:
    """Check that every process holds the same parameters (compared by shape and sum, one
    collective), as a data-parallel run that does not broadcast rank 0's weights needs.

    Raises:
        ConfigError: a parameter differs between processes (the model was built from
            different random weights): load it from a checkpoint or seed its construction.
    """
    if world_size() <= 1:
        return
    from simpo_core.errors import ConfigError

    named = list(model.named_parameters())
    with torch.no_grad():
        sums = [p.detach().sum().to(torch.float64) for _, p in named]
        sizes = [torch.tensor(float(p.numel()), dtype=torch.float64, device=p.device) for _, p in named]
        mine = torch.stack(sums + sizes)
    low, high = mine.clone(), mine.clone()
    torch.distributed.all_reduce(low, op=torch.distributed.ReduceOp.MIN)
    torch.distributed.all_reduce(high, op=torch.distributed.ReduceOp.MAX)
    differs = (low != high).nonzero()
    if len(differs):
        name = named[int(differs[0]) % len(named)][0]
        raise ConfigError(
            f"the processes start from different weights (first: {name}); load the model from a checkpoint "
            "or build it from the same seed in every process"
        )


def peak_memory_bytes(device: torch.device) -> list[int]:
    """Each process's peak memory so far, in rank order (collective under torchrun): the most
    GPU memory torch allocated on CUDA, the peak resident memory (VmHWM) on the CPU."""
    if device.type == "cuda":
        mine = torch.cuda.max_memory_allocated(device)
    else:
        mine = _peak_resident_bytes()
    if world_size() <= 1 or not in_group():
        return [mine]
    gathered = [torch.zeros(1, dtype=torch.int64, device=device) for _ in range(world_size())]
    torch.distributed.all_gather(gathered, torch.tensor([mine], dtype=torch.int64, device=device))
    return [int(value) for value in gathered]


def _peak_resident_bytes() -> int:
    """VmHWM of /proc/self/status (0 where there is no such file)."""
    try:
        with open("/proc/self/status") as file:
            status = file.read()
    except OSError:
        return 0
    line = next((line for line in status.splitlines() if line.startswith("VmHWM:")), "VmHWM: 0 kB")
    return int(line.split()[1]) * 1024


def sum_metrics(metrics: dict[str, float], device: torch.device) -> dict[str, float]:
    """Sum each metric over the processes (the shares already divide by the step's totals)."""
    if world_size() <= 1:
        return metrics
    keys = sorted(metrics)
    values = torch.tensor([metrics[k] for k in keys], dtype=torch.float64, device=device)
    torch.distributed.all_reduce(values)
    return dict(zip(keys, values.tolist()))


def close() -> None:
    """Leave the process group (no-op when there is none)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def barrier() -> None:
    """Wait for every process (no-op when not distributed)."""
    if world_size() > 1:
        torch.distributed.barrier()


def torchrun_command(program: Sequence[str], num_processes: int, nnodes: int = 1, **rendezvous: Any) -> list[str]:
    """The argv that runs `program` in `num_processes` processes per node with torchrun.

    Args:
        program: the command each process runs: a script resolved on PATH and its
            arguments, or `["-m", "module", *arguments]` as with `python -m` (the trainer's
            worker is `["-m", "simpo_core.train.worker", "--config", "train.yaml"]`).
        num_processes: processes per node (GPUs per node, or CPU workers).
        nnodes: machines; above 1 pass `rdzv_endpoint="host:29500"` (and `rdzv_id`) and run
            the same command on every machine.
        rendezvous: extra torchrun options, e.g. `rdzv_endpoint`, `rdzv_id`, `rdzv_backend`.
    """
    options = ["--standalone"] if nnodes == 1 else [f"--nnodes={nnodes}", "--rdzv_backend=c10d"]
    options += [f"--{key}={value}" for key, value in rendezvous.items()]
    options.append(f"--nproc_per_node={num_processes}")
    if program[0] == "-m":
        target = ["--module", *program[1:]]
    else:
        target = [shutil.which(program[0]) or program[0], *program[1:]]
    return [sys.executable, "-m", "torch.distributed.run", *options, *target]
