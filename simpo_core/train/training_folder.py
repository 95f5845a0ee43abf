"""A training's folder (`output_dir`): its lock, its finished result and its metric history.

A finished training writes `final/` (the model), `history.json` and, last, `final.json`: a
folder with `final.json` holds a training that is done and reused as it is. The lock keeps a
second run of the same training from writing beside the first.
"""

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

HISTORY_FILE = "history.json"  # metrics per logged step, read back after a torchrun job
FINAL_DIR = "final"
DONE_FILE = "final.json"  # written last: the training in this folder is finished and reusable
LOCK_FILE = ".training.lock"
LOCK_LOG_SECONDS = 60


@dataclass
class TrainResult:
    """A finished training: the saved model, the steps run and every logged metric."""

    model_dir: Path
    steps: int
    history: list[dict[str, Any]]
    resumed_from_step: int | None = None  # the checkpoint this training continued from
    reused: bool = False  # True when a finished training was found and nothing was trained
    packed_attention_path: str = ""  # how the last packed call ran attention ("loop", "FlexAttention ...")
    packed_attention_fallbacks: int = 0  # packed calls that fell back to the loop after FlexAttention failed
    peak_memory_bytes: list[int] = field(default_factory=list)  # per rank, to the last step (GPU: allocated)

    @property
    def final_metrics(self) -> dict[str, Any]:
        """The last logged training metrics (empty when no step was logged)."""
        return next((entry for entry in reversed(self.history) if "loss" in entry), {})


def record_finished(output_dir: Path, result: TrainResult) -> None:
    """Write the history, then `final.json` (last: from then on the folder holds a finished training)."""
    output_dir = Path(output_dir)
    (output_dir / HISTORY_FILE).write_text(json.dumps(result.history, indent=1))
    done = {"steps": result.steps, "resumed_from_step": result.resumed_from_step}
    done.update(packed_attention_path=result.packed_attention_path, fallbacks=result.packed_attention_fallbacks)
    done.update(peak_memory_bytes=result.peak_memory_bytes)
    (output_dir / DONE_FILE).write_text(json.dumps(done))


def finished_training(output_dir: Path) -> TrainResult | None:
    """The training finished in `output_dir` (its model, steps and history), or None."""
    output_dir = Path(output_dir)
    if not (output_dir / DONE_FILE).is_file():
        return None
    done = json.loads((output_dir / DONE_FILE).read_text())
    result = TrainResult(output_dir / FINAL_DIR, done["steps"], read_history(output_dir), done["resumed_from_step"])
    result.packed_attention_path = done.get("packed_attention_path", "")
    result.packed_attention_fallbacks = done.get("fallbacks", 0)
    result.peak_memory_bytes = done.get("peak_memory_bytes", [])
    return result


def clear_training(output_dir: Path) -> None:
    """Forget a training in `output_dir` (checkpoints, final model, history) to start afresh."""
    import shutil

    folder = Path(output_dir)
    for path in folder.iterdir() if folder.is_dir() else []:
        if path.name == LOCK_FILE:
            continue
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()


@contextmanager
def training_lock(output_dir: Path) -> Iterator[None]:
    """Hold the folder's training lock: a second run of the same training waits here, then
    finds the first one's checkpoints or finished model instead of writing beside it.

    An advisory `flock`: it holds between processes on one machine and on shared file
    systems that implement it; it is released when the holder exits, even by SIGKILL.
    """
    import fcntl
    import time

    Path(output_dir).mkdir(parents=True, exist_ok=True)
    with (Path(output_dir) / LOCK_FILE).open("w") as handle:
        waited = 0.0
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if waited % LOCK_LOG_SECONDS == 0:
                    logger.info("another run is training in %s; waiting for it (%.0f s so far)", output_dir, waited)
                time.sleep(1.0)
                waited += 1.0
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def read_history(output_dir: Path) -> list[dict[str, Any]]:
    """The metric history a finished job wrote (e.g. under torchrun)."""
    return json.loads((Path(output_dir) / HISTORY_FILE).read_text())
