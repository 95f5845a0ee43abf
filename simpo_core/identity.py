"""The training identity: what makes two trainings the same training.

    identity = sha256(data fingerprint + the settings that shape the training data
                      + the resolved training settings + the starting model's identity)

A scheduled rerun on an unchanged export has the same identity as the run before it, so the
flow can skip it (nothing new to learn), and a rerun after a dead worker finds the
checkpoints of the same training under a folder named by the identity and resumes them.
"""

import hashlib
import json
from pathlib import Path
from typing import Any

# Settings that change neither the weights nor the data a training sees. The process count
# is one of them (N processes compute the one-process step, and a training's checkpoints resume
# on another count); the strategy is not: a whole-weights checkpoint does not resume sharded.
IGNORED_TRAINING_FIELDS = (
    "output_dir",
    "logging_steps",
    "eval_steps",
    "save_steps",
    "save_total_limit",
    "num_processes",
    "nnodes",
    "fsdp_cpu_offload",
)
WHOLE_FILE_BYTES = 64 * 2**20  # files up to this size are hashed whole
EDGE_BYTES = 2**20  # larger ones: size, modification time and their first and last MiB


def training_identity(
    data_fingerprint: str, data_settings: dict[str, Any], training: dict[str, Any], model_identity: str
) -> str:
    """The SHA-256 identity of a training (hex).

    Args:
        data_fingerprint: the validated source's fingerprint.
        data_settings: validation, audit and split settings (they decide which rows train).
        training: the resolved training settings (`SimPOConfig.model_dump(mode="json")`).
        model_identity: `model_identity(source)` of the starting model.
    """
    kept = {key: value for key, value in training.items() if key not in IGNORED_TRAINING_FIELDS}
    payload = {"data": data_fingerprint, "data_settings": data_settings, "training": kept, "model": model_identity}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def model_identity(source: str) -> str:
    """What the starting model is, as a string that changes when its weights change.

    A local folder (the `tiny` build included) is identified by its files' content; a hub
    id by the commit of its local snapshot when it is cached, else by the id alone.
    """
    from simpo_core.models import resolve_model_source

    resolved = Path(resolve_model_source(source))
    if resolved.is_dir():
        return "folder:" + folder_digest(resolved)
    return f"hub:{source}@{_cached_commit(source) or 'unknown'}"


def folder_digest(folder: Path) -> str:
    """SHA-256 over the files of a model folder: names, sizes and content (the edges of
    very large weight files, with their modification time, instead of every byte)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")):
        size = path.stat().st_size
        digest.update(f"{path.relative_to(folder)}:{size}\n".encode())
        with path.open("rb") as handle:
            if size <= WHOLE_FILE_BYTES:
                digest.update(handle.read())
                continue
            digest.update(handle.read(EDGE_BYTES))
            handle.seek(size - EDGE_BYTES)
            digest.update(handle.read(EDGE_BYTES))
        digest.update(str(path.stat().st_mtime_ns).encode())
    return digest.hexdigest()


def _cached_commit(repo_id: str) -> str | None:
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, "config.json")
    return Path(found).parent.name if isinstance(found, str) else None  # .../snapshots/<commit>/config.json
