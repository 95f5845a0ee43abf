"""Each training's own random numbers.

torch keeps one default generator per device for the whole process, so trainings in threads
of one process (concurrent sweep trials) would draw each other's dropout masks, and a trial's
weights would depend on what trained beside it. A `TrainingRng` keeps one training's own
generator states: each section that draws (`drawing`) holds the lock of its device, puts the
training's state into the generator and takes it back out at the end. `seeded` is a section
drawing from freshly seeded generators that puts back the states it found.
"""

import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

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
    import torch

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return ["cpu", *(f"cuda:{index}" for index in range(gpus))]


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
