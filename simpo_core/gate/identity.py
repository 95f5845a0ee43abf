"""The training identity: what makes two trainings the same training.

    identity = sha256(data fingerprint + the settings that shape the training data
                      + the resolved training settings (precision resolved, never `auto`)
                      + the starting model's identity + the training code's version)

A scheduled rerun on an unchanged export has the same identity as the run before it, so the
flow can skip it (nothing new to learn), and a rerun after a dead worker finds the
checkpoints of the same training under a folder named by the identity and resumes them.
Everything in it decides the weights; nothing in it depends on where, when or on how many
processes the training runs, so the same training has the same identity on any machine.
"""

import functools
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

from simpo_core.data.record import file_sha256

logger = logging.getLogger(__name__)

# Settings that change neither the weights nor the data a training sees. The process count
# is one of them (N processes compute the one-process step, and a training's checkpoints resume
# on another count); the strategy is not: a whole-weights checkpoint does not resume sharded.
IGNORED_TRAINING_FIELDS = (
    "preset",  # chooses the other fields' values, and those are hashed
    "output_dir",
    "logging_steps",
    "eval_steps",
    "save_steps",
    "save_total_limit",
    "num_processes",
    "nnodes",
    "fsdp_cpu_offload",
    "num_threads",
    "packed_attention",  # how attention runs, not what it computes (both paths are exact)
)
# The code that decides the weights: reading, validating, auditing, mixing and splitting the
# data, loading the model, the loss, the forward and the training loop.
TRAINING_CODE = ("data", "audit", "train", "models.py", "tiny_model.py")
PACKAGE = "simpo-pipeline"
DIGEST_CACHE_FILE = ".simpo-digests.json"  # beside the weights: (name, size, times, inode) -> sha256


def training_identity(
    data_fingerprint: str,
    data_settings: dict[str, Any],
    training: dict[str, Any],
    model_identity: str,
    code_version: str | None = None,
) -> str:
    """The SHA-256 identity of a training (hex).

    Args:
        data_fingerprint: the validated source's fingerprint.
        data_settings: validation, audit and split settings (they decide which rows train).
        training: the resolved training settings (`resolved_training(config, device)`).
        model_identity: `model_identity(source)` of the starting model.
        code_version: `training_code_version()` (the default): an upgrade that changes how
            the weights are computed changes the identity, so a nightly run retrains.
    """
    kept = {key: value for key, value in training.items() if key not in IGNORED_TRAINING_FIELDS}
    payload = {
        "data": data_fingerprint,
        "data_settings": data_settings,
        "training": kept,
        "model": model_identity,
        "code": code_version or training_code_version(),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def resolved_training(config: Any, device: str = "auto", quantization: str = "none") -> dict[str, Any]:
    """A `SimPOConfig` as the identity sees it: `precision: auto` resolved on `device`
    (bf16-mixed on a bfloat16 GPU, fp32 elsewhere), so the same settings on a GPU and on a
    CPU machine are two trainings; LoRA on a 4-bit or 8-bit base (`model.quantization`) is
    another training than on the full-precision one."""
    from simpo_core.models import resolve_device
    from simpo_core.train.precision import resolve_precision

    values = config.model_dump(mode="json")
    values["precision"] = resolve_precision(config.precision, resolve_device(device))
    if quantization != "none":  # absent when off: the identities of unquantized trainings stay as they were
        values["quantization"] = quantization
    return values


@functools.cache
def training_code_version() -> str:
    """`<package version>+<sha256 of the modules that decide the weights>` (12 hex digits)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        package = version(PACKAGE)
    except PackageNotFoundError:  # run from a source tree that was never installed
        package = "source"
    root = Path(__file__).parents[1]  # simpo_core/
    digest = hashlib.sha256()
    for entry in TRAINING_CODE:
        files = sorted((root / entry).rglob("*.py")) if (root / entry).is_dir() else [root / entry]
        for path in files:
            digest.update(f"{path.relative_to(root).as_posix()}\n".encode())
            digest.update(path.read_bytes())
    return f"{package}+{digest.hexdigest()[:12]}"


def model_identity(source: str) -> str:
    """What the starting model is, as a string that changes when its weights change.

    The embedded builds are identified by their recipe (they are deterministic, so the
    same on every machine), a local folder by its files' content, a hub id by the commit
    of its snapshot.

    Raises:
        ConfigError: a hub id whose commit cannot be known (not cached, and the hub is offline).
    """
    from simpo_core.models import EMBEDDED_MODELS, resolve_model_source

    if source in EMBEDDED_MODELS:
        return embedded_model_identity(source)
    resolved = Path(resolve_model_source(source))
    if resolved.is_dir():
        return "folder:" + folder_digest(resolved)
    return f"hub:{source}@{hub_commit(source)}"


def embedded_model_identity(source: str) -> str:
    """`tiny` / `tiny-scratch` by what builds them: the architecture, the seed, and for `tiny`
    the SFT recipe (data, settings, seed); never by the files of a build (they record times)."""
    from simpo_core.models import TINY
    from simpo_core.tiny_model import TINY_ARCHITECTURE, TINY_CHAT_TEMPLATE, TINY_SEED

    recipe: dict[str, Any] = {"architecture": TINY_ARCHITECTURE, "seed": TINY_SEED, "template": TINY_CHAT_TEMPLATE}
    if source == TINY:
        from simpo_core.train.tiny_sft import tiny_sft_recipe

        recipe["sft"] = tiny_sft_recipe()
    digest = hashlib.sha256(json.dumps(recipe, sort_keys=True, default=str).encode()).hexdigest()
    return f"embedded:{source}:{digest}"


def folder_digest(folder: Path) -> str:
    """SHA-256 over the files of a model folder: names, sizes and every byte of content.

    Each file's hash is cached beside it (`.simpo-digests.json`, keyed by name, size,
    modification and change times and inode), so a large checkpoint is read once: a copy
    (`cp`) is hashed again and keeps the identity; a file rewritten with the same size and
    modification time (`rsync -a`, even `--inplace`) has a new change time (which no tool
    can set back) and is hashed again too.
    """
    cache_path = folder / DIGEST_CACHE_FILE
    cache = _read_cache(cache_path)
    digest, fresh = hashlib.sha256(), {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")):
        stat = path.stat()
        key = (
            f"{path.relative_to(folder).as_posix()}:{stat.st_size}:{stat.st_mtime_ns}:{stat.st_ctime_ns}:{stat.st_ino}"
        )
        fresh[key] = cache.get(key) or file_sha256(path)
        digest.update(f"{path.relative_to(folder).as_posix()}:{stat.st_size}:{fresh[key]}\n".encode())
    if fresh != cache:
        _write_cache(cache_path, fresh)
    return digest.hexdigest()


def _read_cache(path: Path) -> dict[str, str]:
    try:
        cache = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return cache if isinstance(cache, dict) else {}


def _write_cache(path: Path, cache: dict[str, str]) -> None:
    """Best effort: a read-only model folder is hashed again next time, nothing more."""
    partial = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        partial.write_text(json.dumps(cache, indent=0, sort_keys=True))
        partial.replace(path)
    except OSError as error:
        logger.debug("could not cache file digests in %s: %s", path, error)
        partial.unlink(missing_ok=True)


def hub_commit(repo_id: str) -> str:
    """The commit of a hub model: of its cached snapshot, else asked of the hub.

    Raises:
        ConfigError: the model is not cached and the hub is offline (its identity would
            change once it is cached, so it is not guessed).
    """
    from huggingface_hub import try_to_load_from_cache

    from simpo_core.errors import ConfigError

    found = try_to_load_from_cache(repo_id, "config.json")
    if isinstance(found, str):
        return Path(found).parent.name  # .../snapshots/<commit>/config.json
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        raise ConfigError(
            f"model {repo_id!r} is not in the Hugging Face cache and offline mode is on (HF_HUB_OFFLINE=1), so "
            "its commit is unknown: download it once where the hub is reachable, or set HF_HUB_OFFLINE=0"
        )
    from huggingface_hub import HfApi

    try:
        return str(HfApi().model_info(repo_id).sha)
    except Exception as error:  # noqa: BLE001 (any hub failure says the same thing to the user)
        raise ConfigError(f"could not ask the hub for the commit of {repo_id!r}: {error}") from error
