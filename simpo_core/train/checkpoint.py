"""Atomic, resumable training checkpoints.

A checkpoint is a folder `checkpoint-<step>` under the output folder holding:

    trainable.safetensors   every trainable parameter (the full model, or the LoRA adapter)
    optimizer.pt            optimizer state
    scheduler.pt            learning-rate scheduler state
    rng.pt                  Python, NumPy, torch CPU and the training GPU's generator states
    trainer_state.json      step, data position, metrics history (written last)

Under `strategy: fsdp` the weights and optimizer state are sharded instead
(`sharded_checkpoint`); both kinds resume through `find_latest_checkpoint`.

It is written into `.tmp-checkpoint-<step>` and renamed when complete, so a crash (even a
SIGKILL) leaves either a complete checkpoint or a temporary folder that resuming ignores.
"""

import json
import logging
import os
import random
import re
import shutil
from pathlib import Path
from typing import Any

import torch

logger = logging.getLogger(__name__)

CHECKPOINT_PATTERN = re.compile(r"^checkpoint-(\d+)$")
STATE_FILE = "trainer_state.json"
WEIGHTS_FILE = "trainable.safetensors"


def trainable_parameters(model: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
    """Named parameters that require a gradient (shared tensors listed once)."""
    return {name: param for name, param in model.named_parameters() if param.requires_grad}


def capture_rng_state(device: torch.device | None = None) -> dict[str, Any]:
    """Every random generator that training touches (dropout, data order helpers): Python's,
    NumPy's, torch's CPU generator and, training on a GPU, that GPU's generator (`device`)."""
    state: dict[str, Any] = {"python": random.getstate(), "torch": torch.get_rng_state()}
    try:
        import numpy

        state["numpy"] = numpy.random.get_state()
    except ImportError:  # numpy is optional for the trainer itself
        pass
    if device is not None and device.type == "cuda":
        # The training's own GPU only: a resumed run (a retried sweep trial) may get another index.
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def restore_rng_state(state: dict[str, Any], device: torch.device | None = None) -> None:
    """Put back what `capture_rng_state` recorded; the GPU state goes to `device`, the GPU this
    run trains on, whichever GPU wrote it."""
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "numpy" in state:
        import numpy

        numpy.random.set_state(state["numpy"])
    cuda = state.get("cuda")
    if cuda is None or device is None or device.type != "cuda":
        return
    if isinstance(cuda, list):  # an older checkpoint: one state per visible GPU, by index
        index = device.index if device.index is not None else torch.cuda.current_device()
        cuda = cuda[index] if index < len(cuda) else None
    if cuda is not None:
        torch.cuda.set_rng_state(cuda, device)


def parameter_device(model: torch.nn.Module) -> torch.device:
    """Where the model's (local) parameters live: the device whose generator training draws from."""
    return next((param.device for param in model.parameters()), torch.device("cpu"))


def save_checkpoint(
    output_dir: Path,
    step: int,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    trainer_state: dict[str, Any],
    save_total_limit: int | None = None,
) -> Path:
    """Write `output_dir/checkpoint-<step>` atomically and prune old checkpoints.

    Returns:
        The path of the complete checkpoint.
    """
    from safetensors.torch import save_file

    output_dir = Path(output_dir)
    final = output_dir / f"checkpoint-{step}"
    tmp = output_dir / f".tmp-checkpoint-{step}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    weights = {name: param.detach().cpu().contiguous() for name, param in trainable_parameters(model).items()}
    save_file(weights, str(tmp / WEIGHTS_FILE))
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    complete_checkpoint(tmp, step, scheduler, trainer_state, save_total_limit, parameter_device(model))
    logger.info("saved checkpoint %s", final)
    return final


def complete_checkpoint(
    tmp: Path,
    step: int,
    scheduler: Any,
    trainer_state: dict[str, Any],
    save_total_limit: int | None,
    device: torch.device | None = None,
) -> Path:
    """Add the schedule, random and trainer states (the last file) to the weights in `tmp`,
    rename it `checkpoint-<step>` and prune the oldest beyond `save_total_limit`."""
    output_dir, final = tmp.parent, tmp.parent / f"checkpoint-{step}"
    torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
    torch.save(capture_rng_state(device), tmp / "rng.pt")
    write_json_synced(tmp / STATE_FILE, {**trainer_state, "step": step})
    if final.exists():  # a re-run of the same step replaces the older copy
        shutil.rmtree(final)
    os.replace(tmp, final)
    fsync_dir(output_dir)
    prune_checkpoints(output_dir, save_total_limit)
    return final


def find_latest_checkpoint(output_dir: Path) -> Path | None:
    """The complete checkpoint with the highest step, or None. Temporary folders and folders
    missing a file (copied by hand, or from another version) are skipped with a warning."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return None
    for path in sorted(_checkpoint_dirs(output_dir), key=_step_of, reverse=True):
        if is_complete(path):
            return path
        logger.warning("ignoring incomplete checkpoint %s", path)
    return None


def is_complete(path: Path) -> bool:
    """Every file of a whole or a sharded (`sharded_checkpoint`) checkpoint is there."""
    from simpo_core.train.sharded_checkpoint import is_sharded

    weights = is_sharded(path) or all((path / name).is_file() for name in (WEIGHTS_FILE, "optimizer.pt"))
    return weights and all((path / name).is_file() for name in ("scheduler.pt", "rng.pt", STATE_FILE))


def load_checkpoint(
    path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any
) -> dict[str, Any]:
    """Restore weights, optimizer, scheduler and RNG states; return the trainer state.

    Raises:
        ValueError: the checkpoint's parameters do not match the model's trainable ones
            (a different model or LoRA setting than the run that wrote it).
    """
    from safetensors.torch import load_file

    weights = load_file(str(Path(path) / WEIGHTS_FILE))
    params = trainable_parameters(model)
    if set(weights) != set(params):
        missing, extra = sorted(set(params) - set(weights))[:3], sorted(set(weights) - set(params))[:3]
        raise ValueError(
            f"checkpoint {path} does not match this model (missing {missing}, unexpected {extra}); "
            "resume with the same model and LoRA settings, or start a new output_dir"
        )
    with torch.no_grad():
        for name, param in params.items():
            param.copy_(weights[name].to(param.device, param.dtype))
    device = next(iter(params.values())).device if params else torch.device("cpu")
    optimizer.load_state_dict(torch.load(Path(path) / "optimizer.pt", map_location=device, weights_only=True))
    scheduler.load_state_dict(torch.load(Path(path) / "scheduler.pt", weights_only=True))
    restore_rng_state(torch.load(Path(path) / "rng.pt", weights_only=False), parameter_device(model))
    return json.loads((Path(path) / STATE_FILE).read_text(encoding="utf-8"))


def prune_checkpoints(output_dir: Path, keep: int | None) -> None:
    """Delete the oldest complete checkpoints beyond `keep` (None keeps all)."""
    if keep is None:
        return
    complete = sorted((p for p in _checkpoint_dirs(output_dir) if is_complete(p)), key=_step_of)
    for path in complete[: max(len(complete) - keep, 0)]:
        shutil.rmtree(path, ignore_errors=True)


def _checkpoint_dirs(output_dir: Path) -> list[Path]:
    return [p for p in Path(output_dir).iterdir() if p.is_dir() and CHECKPOINT_PATTERN.match(p.name)]


def _step_of(path: Path) -> int:
    return int(CHECKPOINT_PATTERN.match(path.name).group(1))


def write_json_synced(path: Path, data: dict[str, Any]) -> None:
    with path.open("w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=1)
        handle.flush()
        os.fsync(handle.fileno())


def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save_model_atomic(
    model: torch.nn.Module,
    tokenizer: Any,
    path: Path,
    merge_lora: bool = False,
    dtype: torch.dtype | None = None,
    in_place: bool = False,
) -> Path:
    """Save weights (safetensors) and tokenizer into `path`, replacing it only when complete.

    A peft model saves its adapter; with `merge_lora` the folder instead holds the merged
    full model (loadable without peft) and the adapter goes to `path/adapter`. Full weights
    are written in `dtype` (their own when None); adapter weights keep theirs. The adapter is
    merged into a copy, or, with `in_place` (a model that will not train again, such as one
    gathered from FSDP shards, which cannot be copied), into the model itself.
    """
    import copy

    path = Path(path)
    tmp = path.with_name(f".tmp-{path.name}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    is_peft = hasattr(model, "peft_config")
    if is_peft and merge_lora:
        model.save_pretrained(tmp / "adapter")
        merged = (model if in_place else copy.deepcopy(model)).merge_and_unload()  # a copy: training goes on
        _save_full_weights(merged, tmp, dtype)
    elif is_peft:
        model.save_pretrained(tmp)
    else:
        _save_full_weights(model, tmp, dtype)
    if tokenizer is not None:
        tokenizer.save_pretrained(tmp)
    if path.exists():
        shutil.rmtree(path)
    os.replace(tmp, path)
    logger.info("saved the %s to %s", "merged model and adapter" if is_peft and merge_lora else "model", path)
    return path


def _save_full_weights(model: torch.nn.Module, folder: Path, dtype: torch.dtype | None) -> None:
    """`save_pretrained` in `dtype`, without casting the live model (a float32 master copy
    cast down and back would lose the very precision it exists for)."""
    own = next((p.dtype for p in model.parameters() if p.is_floating_point()), None)
    if dtype is None or dtype == own:
        model.save_pretrained(folder)
        return
    state = {name: t.to(dtype) if t.is_floating_point() else t for name, t in model.state_dict().items()}
    model.save_pretrained(folder, state_dict=state)
    config_file = folder / "config.json"  # save_pretrained records the live model's dtype; record the saved one
    config = json.loads(config_file.read_text())
    config["dtype"] = str(dtype).removeprefix("torch.")
    config_file.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    logger.info("weights written in %s (trained in %s)", dtype, own)
