"""Which GPUs each sweep trial uses.

GPUs. With `model.device` `auto` (or `cuda`) on a machine with GPUs, trials that run at the
same time get GPUs of their own: on the thread runner a `DevicePool` hands each trial
`train.num_processes` free GPUs in turn (round robin) and takes them back when the trial is
evaluated; on the local Dask cluster each worker process sees only its GPUs
(`CUDA_VISIBLE_DEVICES`, set by `gpu_worker_class`), so `auto` there is that worker's GPU.
`trial_placement` decides which, and how many trials run at once. The random numbers each
trial draws are its own (`simpo_core.rng`).
"""

import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Any

from simpo_core.errors import ConfigError

if TYPE_CHECKING:  # for the annotation only
    from simpo_core.sweep.settings import SweepSettings

GPU_DEVICE_SETTINGS = ("auto", "cuda")  # model.device values that leave the choice of GPU to the sweep


def visible_gpu_count() -> int:
    """GPUs this process can use (0 without CUDA); reads no GPU memory."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def gpu_groups(count: int, per_group: int) -> list[list[int]]:
    """Consecutive groups of `per_group` GPU indices out of `count` (a remainder is left idle)."""
    return [list(range(start, start + per_group)) for start in range(0, count - per_group + 1, per_group)]


def visible_devices(indices: Sequence[int]) -> str:
    """The `CUDA_VISIBLE_DEVICES` value that shows a child process GPUs `indices` of this one
    (this process's own `CUDA_VISIBLE_DEVICES`, when set, maps its indices to the machine's)."""
    parent = [entry.strip() for entry in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if entry.strip()]
    return ",".join(parent[index] if parent else str(index) for index in indices)


class DevicePool:
    """Hands out devices to trials: the least busy first, in turn among equals (round robin),
    so concurrent trials get distinct devices while there are free ones."""

    def __init__(self, devices: Sequence[str]) -> None:
        if not devices:
            raise ValueError("a device pool needs at least one device")
        self.devices = list(devices)
        self._load = dict.fromkeys(self.devices, 0)  # trials on each device
        self._next = 0  # where the next turn starts
        self._lock = threading.Lock()

    def acquire(self, count: int = 1) -> list[str]:
        """`count` distinct devices, free ones first; shared only when fewer are free.

        Raises:
            ValueError: `count` is below 1 or above the number of devices.
        """
        if not 1 <= count <= len(self.devices):
            raise ValueError(f"cannot take {count} device(s) from a pool of {len(self.devices)}")
        with self._lock:
            turn = self.devices[self._next :] + self.devices[: self._next]
            chosen = sorted(turn, key=self._load.__getitem__)[:count]  # stable: turn order among equals
            for device in chosen:
                self._load[device] += 1
            self._next = (self.devices.index(chosen[-1]) + 1) % len(self.devices)
            return sorted(chosen, key=self.devices.index)

    def release(self, devices: Sequence[str]) -> None:
        """Give back devices `acquire` returned.

        Raises:
            ValueError: a device that is not out.
        """
        with self._lock:
            for device in devices:
                if not self._load.get(device):
                    raise ValueError(f"device {device!r} was not handed out")
                self._load[device] -= 1

    def in_use(self) -> dict[str, int]:
        """Trials on each device now."""
        with self._lock:
            return dict(self._load)


@dataclass
class TrialPlacement:
    """Where a sweep's trials run: how many at once and, on a GPU machine, whose GPUs."""

    concurrency: int
    device: str  # model.device as configured: a trial's device when the sweep hands out none
    per_trial: int = 1  # GPUs a trial takes (train.num_processes)
    pool: DevicePool | None = None  # the thread runner's GPUs
    worker_gpus: list[str] = field(default_factory=list)  # local Dask cluster: CUDA_VISIBLE_DEVICES per worker
    held: dict[str, list[str]] = field(default_factory=dict)  # trial name -> its GPUs

    def acquire(self, trial: str) -> str:
        """Take trial `trial`'s GPUs (kept until `release`); return its `model.device`."""
        if self.pool is not None:
            self.held[trial] = self.pool.acquire(self.per_trial)
        return self.device_of(trial)

    def device_of(self, trial: str) -> str:
        """The `model.device` trial `trial` trains and evaluates on: its GPU on the thread runner.
        A torchrun trial keeps `model.device`: its processes take GPUs by local rank."""
        held = self.held.get(trial)
        return held[0] if held and len(held) == 1 else self.device

    def release(self, trial: str) -> None:
        """Give trial `trial`'s GPUs back (nothing when it held none)."""
        held = self.held.pop(trial, None)
        if held and self.pool is not None:
            self.pool.release(held)

    def cluster_options(self) -> dict[str, Any]:
        """Extra `LocalCluster` arguments: one worker process per GPU group, each seeing its own."""
        if not self.worker_gpus:
            return {}
        return {"worker_class": gpu_worker_class(), "gpu_groups": list(self.worker_gpus)}


def trial_placement(settings: "SweepSettings", device: str, per_trial: int, gpus: int | None = None) -> TrialPlacement:
    """How many trials run at once and which GPUs each uses (see the module docs).

    `max_concurrency` unset: one trial per group of `per_trial` GPUs when `device` leaves the
    GPU to the sweep and this machine has enough of them, else 1 (on another scheduler's
    workers too: their GPUs are not counted here).

    Raises:
        ConfigError: several torchrun trials at once on the thread runner of a GPU machine
            (their processes would all start on the first GPUs).
    """
    if settings.dask_address is not None:
        return TrialPlacement(settings.max_concurrency or 1, device, per_trial)
    count = visible_gpu_count() if gpus is None else gpus
    groups = gpu_groups(count, per_trial) if device in GPU_DEVICE_SETTINGS else []
    if settings.runner == "dask":
        concurrency = settings.max_concurrency or max(len(groups), 1)
        return TrialPlacement(concurrency, device, per_trial, worker_gpus=[visible_devices(g) for g in groups])
    if not groups:
        return TrialPlacement(settings.max_concurrency or 1, device, per_trial)
    if per_trial > 1:
        if (settings.max_concurrency or 1) > 1:
            raise ConfigError(
                f"sweep.runner=local runs one torchrun trial (train.num_processes={per_trial}) at a time on a GPU "
                "machine: its processes take the first GPUs. Use sweep.runner=dask (each local worker sees its own "
                "GPUs) or sweep.max_concurrency=1"
            )
        return TrialPlacement(1, device, per_trial)
    pool = DevicePool([f"cuda:{index}" for index in range(count)])
    return TrialPlacement(settings.max_concurrency or count, device, per_trial, pool=pool)


@cache
def gpu_worker_class() -> type:
    """A `distributed.Nanny` whose worker process sees only its GPUs: worker `name` i (as
    `LocalCluster` numbers them) gets `gpu_groups[i % len(gpu_groups)]` as its
    `CUDA_VISIBLE_DEVICES`, set before the process starts (so before CUDA initialises)."""
    from distributed import Nanny  # imported here: trainings import this module without Dask

    class GpuNanny(Nanny):
        def __init__(self, *args: Any, gpu_groups: Sequence[str], name: Any = None, env: Any = None, **options: Any):
            visible = gpu_groups[int(name or 0) % len(gpu_groups)]
            super().__init__(*args, name=name, env={**(env or {}), "CUDA_VISIBLE_DEVICES": visible}, **options)

    return GpuNanny
