"""How many CPU threads a training or an evaluation runs: no more than the cores this process
may use, and no more than its model's size profits from.

Torch starts as many intra-op threads as the machine has cores. Two such processes on one
machine (sweep trials, a worker running two flows, the servers beside a training, a test
suite) then run twice as many threads as cores, and threads that spin at OpenMP's barriers
waiting for a descheduled peer slow both jobs tenfold or more instead of twofold. So:

    threads = num_threads                                     when set, else
    cores   = len(os.sched_getaffinity(0)) // LOCAL_WORLD_SIZE   (torchrun's processes share them)
    cores   = min(cores, OMP_NUM_THREADS)                     when that is set
    threads = max(1, min(cores, ceil(parameters / PARAMETERS_PER_THREAD)))

A small model's matrix products are too short to split: the embedded tiny model (0.5 M
parameters) runs a step no faster on two threads than on one, while a 20 M-parameter model
gains about 1.6× from its second thread (docs/performance.md, Threads).
"""

import logging
import math
import os
from typing import Any

logger = logging.getLogger(__name__)

# One more thread per this many parameters: below it, the split costs more than it saves.
PARAMETERS_PER_THREAD = 4_000_000


def available_cores() -> int:
    """CPUs this process may run on: its affinity mask (a container's or `taskset`'s cpuset),
    or every CPU where the platform has no affinity call."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def core_budget(processes: int | None = None) -> int:
    """Cores for one process: the available ones shared among the `processes` of this machine
    (torchrun's `LOCAL_WORLD_SIZE` by default), capped by `OMP_NUM_THREADS` when it is set."""
    if processes is None:
        processes = _positive_env("LOCAL_WORLD_SIZE") or 1
    budget = max(1, available_cores() // max(1, processes))
    omp = _positive_env("OMP_NUM_THREADS")
    return min(budget, omp) if omp else budget


def resolve_num_threads(
    requested: int | None, model_parameters: int | None = None, processes: int | None = None
) -> int:
    """The intra-op thread count to run with (at least 1).

    Args:
        requested: `SimPOConfig.num_threads`; a number is used as it is, None chooses.
        model_parameters: the model's parameter count; None (size unknown) gives the whole
            core budget.
        processes: processes sharing this machine's cores (torchrun's `LOCAL_WORLD_SIZE`
            when None).
    """
    if requested is not None:
        return max(1, requested)
    budget = core_budget(processes)
    if model_parameters is None:
        return budget
    return max(1, min(budget, math.ceil(model_parameters / PARAMETERS_PER_THREAD)))


def apply_num_threads(requested: int | None, model: Any = None) -> int:
    """Set torch's intra-op threads by `resolve_num_threads` for `model`'s size; return the count.

    Inter-op threads are left alone: eager training and generation run no inter-op work, and
    torch allows setting them only before the first parallel call.
    """
    import torch

    parameters = sum(p.numel() for p in model.parameters()) if model is not None else None
    threads = resolve_num_threads(requested, parameters)
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
        logger.info(
            "running %d CPU thread(s) (%s; %d core(s) available)",
            threads,
            "num_threads" if requested is not None else f"automatic for {_millions(parameters)} parameters",
            available_cores(),
        )
    return threads


def torchrun_environment(requested: int | None, processes: int) -> dict[str, str]:
    """`OMP_NUM_THREADS` for `processes` torchrun processes on one machine: each one's core
    budget (or `num_threads`), instead of torchrun's 1 (which it sets when more than one)."""
    return {"OMP_NUM_THREADS": str(resolve_num_threads(requested, processes=processes))}


def _positive_env(name: str) -> int | None:
    try:
        value = int(os.environ.get(name, ""))
    except ValueError:
        return None
    return value if value > 0 else None


def _millions(parameters: int | None) -> str:
    return "unknown" if parameters is None else f"{parameters / 1e6:.1f} M"
