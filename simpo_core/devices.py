"""Which GPUs each sweep trial uses, and the random numbers each training draws.

GPUs. With `model.device` `auto` (or `cuda`) on a machine with GPUs, trials that run at the
same time get GPUs of their own: on the thread runner a `DevicePool` hands each trial
`train.num_processes` free GPUs in turn (round robin) and takes them back when the trial is
evaluated; on the local Dask cluster each worker process sees only its GPUs
(`CUDA_VISIBLE_DEVICES`, set by `gpu_worker_class`), so `auto` there is that worker's GPU.
`trial_placement` decides which, and how many trials run at once.

Random numbers. torch keeps one default generator per device for the whole process, so
trainings in threads of one process would draw each other's dropout masks and a trial's
weights would depend on what trained beside it. A `TrainingRng` keeps one training's own
generator states: each section that draws (`drawing`) holds the lock of its device, puts the
training's state into the generator and takes it back out at the end.
"""

import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Any

from simpo_core.errors import ConfigError

if TYPE_CHECKING:  # the trainer imports this module: it need not load the sweep's settings
    from simpo_core.sweep import SweepSettings

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


# --- random numbers ---------------------------------------------------------------------------
_LOCKS: dict[str, threading.RLock] = {}  # one per default generator: "cpu", "cuda:0", ...
_LOCKS_GUARD = threading.Lock()


class TrainingRng:
    """One training's own states of torch's default generators (see the module docs).

    Only code inside a section draws from this training's states; sections of trainings on
    different devices run side by side, those on one device take turns. Every section takes
    its locks in one order, so they never deadlock; a section does not open another.
    """

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._states: dict[str, Any] = {}

    def reset(self) -> None:
        """Start every generator afresh from the seed (as `torch.manual_seed(seed)` would)."""
        self._states.clear()

    @contextmanager
    def drawing(self, device: Any = None) -> Iterator[None]:
        """Draw from this training's state on `device`'s generator; with no device, on every
        generator (for code that seeds or restores them all: `torch.manual_seed`, a checkpoint)."""
        names = [_generator_name(device)] if device is not None else _all_generator_names()
        with ExitStack() as stack:
            for name in sorted(names):
                stack.enter_context(_lock(name))
            for name in filter(_ready, names):
                state = self._states.get(name)
                _set_state(name, state if state is not None else self._fresh(name))
            try:
                yield
            finally:
                self._states.update({name: _get_state(name) for name in filter(_ready, names)})

    def _fresh(self, name: str) -> Any:
        import torch

        return torch.Generator(device=name).manual_seed(self.seed).get_state()


@contextmanager
def seeded(seed: int, device: Any = None) -> Iterator[None]:
    """A section drawing from generators freshly seeded with `seed` (no other section meanwhile);
    the generators' states are put back as they were at its end, so neither a training's section
    nor code that draws from torch's global generators outside any section sees it."""
    names = [_generator_name(device)] if device is not None else _all_generator_names()
    with ExitStack() as stack:
        for name in sorted(names):
            stack.enter_context(_lock(name))
        found = {name: _get_state(name) for name in filter(_ready, names)}
        with TrainingRng(seed).drawing(device):
            try:
                yield
            finally:
                for name, state in found.items():
                    _set_state(name, state)


def draws_randomness(model: Any) -> bool:
    """Whether training `model` draws random numbers: a dropout module or a dropout setting
    (`attention_dropout`, `resid_pdrop`, ...) above 0."""
    import torch

    dropouts = (torch.nn.Dropout, torch.nn.Dropout1d, torch.nn.Dropout2d, torch.nn.Dropout3d, torch.nn.AlphaDropout)
    if any(isinstance(module, dropouts) and module.p > 0 for module in model.modules()):
        return True
    config = getattr(model, "config", None)
    values = config.to_dict() if hasattr(config, "to_dict") else {}
    return any(
        ("dropout" in key or "pdrop" in key) and type(value) in (int, float) and value > 0
        for key, value in values.items()
    )


def _generator_name(device: Any) -> str:
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return f"cuda:{device.index if device.index is not None else torch.cuda.current_device()}"
    return device.type  # cpu; another kind (meta, mps) is locked but its state is left alone


def _all_generator_names() -> list[str]:
    return ["cpu", *(f"cuda:{index}" for index in range(visible_gpu_count()))]


def _lock(name: str) -> threading.RLock:
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(name, threading.RLock())


def _ready(name: str) -> bool:
    """The generator exists and holds a state (a GPU's once CUDA is initialised)."""
    import torch

    return name == "cpu" or (name.startswith("cuda:") and torch.cuda.is_initialized())


def _get_state(name: str) -> Any:
    import torch

    return torch.get_rng_state() if name == "cpu" else torch.cuda.get_rng_state(name)


def _set_state(name: str, state: Any) -> None:
    import torch

    if name == "cpu":
        torch.set_rng_state(state)
    else:
        torch.cuda.set_rng_state(state, name)
