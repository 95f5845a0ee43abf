"""Resolve a model source (`tiny`, a local folder or a hub id) and load it safely.

The embedded default `tiny` is a seeded small Llama with an offline byte tokenizer, built
and cached on first use. As SimPO expects, `tiny` is an SFT model: the from-scratch build
(`tiny-scratch`, `simpo_core.tiny_model`) after a few seconds of SFT that teach the answer
format. That SFT is training, a layer above this one, so this module never imports it: the
package root registers its builder (`register_embedded_build`), and resolving `tiny` calls it.

Security defaults: `trust_remote_code` stays off unless the caller turns it on (and then
it is logged), and weights load from safetensors only.
"""

import logging
import re
from collections.abc import Callable
from pathlib import Path

from simpo_core.building import one_build_at_a_time
from simpo_core.env import state_dir
from simpo_core.errors import ConfigError

logger = logging.getLogger(__name__)

TINY = "tiny"  # the SFT'd tiny model, the default starting model
TINY_SCRATCH = "tiny-scratch"  # the same model from random weights, before SFT
EMBEDDED_MODELS = (TINY, TINY_SCRATCH)
DEVICE_PATTERN = r"^(auto|cpu|cuda(:[0-9]+)?)$"  # the `model.device` values every stage accepts

# How an embedded model is built: the embedded models' cache folder in, the model's folder out.
EmbeddedBuild = Callable[[Path], Path]
_EMBEDDED_BUILDS: dict[str, EmbeddedBuild] = {}


def register_embedded_build(name: str, build: EmbeddedBuild) -> None:
    """Name the function that builds (or finds cached) embedded model `name`.

    The SFT'd `tiny` is built by training (`simpo_core.train.tiny_sft.build_embedded_tiny`),
    which imports this module; the package root registers it here so that this module never
    imports training.
    """
    if name not in EMBEDDED_MODELS:
        raise ValueError(f"{name!r} is not an embedded model; they are {', '.join(EMBEDDED_MODELS)}")
    _EMBEDDED_BUILDS[name] = build


def resolve_model_source(source: str, cache_dir: Path | None = None) -> str:
    """Turn a model source into something `from_pretrained` accepts.

    Args:
        source: `tiny` (the embedded default, SFT'd), `tiny-scratch` (the same model from
            random weights), a local folder (a full model, or an adapter written with
            `lora.merge_on_save: false`), or a hub id.
        cache_dir: where the tiny builds are cached (`tiny` from scratch, `tiny-sft` after
            SFT); `.simpo/models` under the working directory.

    Returns:
        A local folder path or the hub id unchanged.
    """
    if source in EMBEDDED_MODELS:
        return str(_embedded_model(source, cache_dir or state_dir() / "models"))
    path = Path(source).expanduser()
    if path.exists():
        if not (path / "config.json").exists() and not is_adapter_folder(path):
            raise ConfigError(
                f"model folder {path} has neither config.json nor adapter_config.json; pass a folder written by "
                "save_pretrained (a model or a LoRA adapter), a hub id, or 'tiny'"
            )
        return str(path)
    if source.startswith((".", "/", "~")) or source.count("/") > 1:
        raise ConfigError(f"model path {source} does not exist; check the path or pass 'tiny'")
    return source


def _embedded_model(source: str, cache_dir: Path) -> Path:
    """The folder of embedded model `source`, built into `cache_dir` on first use."""
    if source == TINY_SCRATCH:
        from simpo_core.tiny_model import save_tiny

        return save_tiny(cache_dir / "tiny")
    build = _EMBEDDED_BUILDS.get(source)
    if build is None:  # the package root registers `tiny` whenever any simpo_core module is imported
        raise ConfigError(f"no builder is registered for the embedded model {source!r}")
    return build(cache_dir)


def is_adapter_folder(path: str | Path) -> bool:
    """True for a LoRA adapter saved alone (adapter_config.json, no full model config.json)."""
    path = Path(path)
    return (path / "adapter_config.json").is_file() and not (path / "config.json").is_file()


def adapter_base(path: str | Path) -> str:
    """The starting model an adapter-only folder was trained on (its `base_model_name_or_path`).

    Raises:
        ConfigError: the adapter does not name its base model.
    """
    import json

    base = json.loads((Path(path) / "adapter_config.json").read_text()).get("base_model_name_or_path")
    if not base:
        raise ConfigError(f"adapter {path} does not name its base model (base_model_name_or_path); pass a merged model")
    return str(base)


def resolve_device(device: str = "auto") -> "torch.device":  # noqa: F821 (torch is imported lazily)
    """The torch device of a `model.device` setting: `auto`, `cpu`, `cuda` or `cuda:N`.

    `auto` is this process's GPU when CUDA is available (under torchrun the one
    `init_distributed` selected), else the CPU; `cuda` is this process's GPU.

    Raises:
        ConfigError: CUDA was asked for where there is none, or GPU N does not exist.
    """
    import torch

    if device == "cpu":
        return torch.device("cpu")
    if not re.fullmatch(DEVICE_PATTERN, device):
        raise ConfigError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        if device == "auto":
            return torch.device("cpu")
        raise ConfigError(
            f"device {device!r} asked for, but this torch build sees no CUDA GPU; set model.device to auto or cpu, "
            "or install a CUDA build of torch"
        )
    if device in ("auto", "cuda"):
        return torch.device("cuda", torch.cuda.current_device())
    index = int(device.split(":", 1)[1])
    if index >= torch.cuda.device_count():
        raise ConfigError(f"device {device!r} does not exist: this machine has {torch.cuda.device_count()} GPU(s)")
    return torch.device("cuda", index)


def check_model_source(source: str) -> None:
    """Refuse a model source that cannot load, before any work is done.

    Local folders must exist and hold a config.json; hub ids must be in the local
    Hugging Face cache while offline mode is on.

    Raises:
        ConfigError: the folder is missing or incomplete, or the hub id is not cached offline.
    """
    import os

    if source in EMBEDDED_MODELS:
        return
    resolved = resolve_model_source(source)
    if Path(resolved).exists() or os.environ.get("HF_HUB_OFFLINE", "0").lower() not in ("1", "true", "yes"):
        return
    from huggingface_hub import try_to_load_from_cache

    if not isinstance(try_to_load_from_cache(resolved, "config.json"), str):
        raise ConfigError(
            f"model {source!r} is not a local folder and is not in the Hugging Face cache, and offline mode "
            "is on (HF_HUB_OFFLINE=1): download it once where the hub is reachable, pass a local folder, "
            "or set HF_HUB_OFFLINE=0"
        )


def load_tokenizer(source: str, trust_remote_code: bool = False):
    """Load a tokenizer and make sure it can pad (pad falls back to eos)."""
    from transformers import AutoTokenizer

    if source in EMBEDDED_MODELS:
        # The embedded models' byte tokenizer needs no files: counting tokens (`simpo audit`,
        # validation) never waits for a model build or its SFT.
        from simpo_core.tiny_model import build_tiny_tokenizer

        _log_remote_code(source, trust_remote_code)
        return build_tiny_tokenizer()
    resolved = resolve_model_source(source)
    _log_remote_code(resolved, trust_remote_code)
    try:
        tokenizer = AutoTokenizer.from_pretrained(resolved, trust_remote_code=trust_remote_code)
    except OSError as error:
        raise ConfigError(_not_found_message(source, error)) from error
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token_id is None:
            raise ConfigError(f"tokenizer of {source} has neither a pad nor an eos token; add one")
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model_and_tokenizer(
    source: str,
    trust_remote_code: bool = False,
    dtype=None,
    device: str | None = None,
    base: str | None = None,
    quantization_config=None,
):
    """Load a causal LM and its tokenizer from a model source.

    Args:
        source: `tiny`, a local folder or a hub id (read from the local cache when offline).
            An adapter-only folder (`lora.merge_on_save: false`) loads its base model and
            merges the adapter into it.
        trust_remote_code: run code shipped with the model; off by default.
        dtype: torch dtype for the weights; the checkpoint's own when None. Training upcasts
            to its precision policy's master dtype (`simpo_core.train.precision`).
        device: `auto`, `cpu`, `cuda` or `cuda:N` (see `resolve_device`); None leaves the
            model on the CPU.
        base: for an adapter-only folder, the base model to load instead of the one the
            adapter names (e.g. a copy logged beside it).
        quantization_config: a `transformers.BitsAndBytesConfig` (QLoRA,
            `simpo_core.train.quantized`): the weights are quantized as they load, straight
            onto `device` (a quantized model cannot move afterwards).

    Returns:
        `(model, tokenizer)`; torch's CPU threads are set for the model's size (the automatic
        rule of `simpo_core.threads`).

    Raises:
        ConfigError: the source is missing, not cached while offline, or not safetensors.
    """
    from transformers import AutoModelForCausalLM

    resolved = resolve_model_source(source)
    tokenizer = load_tokenizer(resolved, trust_remote_code)
    adapter = resolved if is_adapter_folder(resolved) else None
    weights = resolve_model_source(base or adapter_base(adapter)) if adapter else resolved
    placement = {}
    if quantization_config is not None:  # quantized while loading, on the device it will run on
        placement = {"quantization_config": quantization_config, "device_map": {"": resolve_device(device or "auto")}}
    try:
        with one_build_at_a_time():
            model = AutoModelForCausalLM.from_pretrained(
                weights, trust_remote_code=trust_remote_code, use_safetensors=True, dtype=dtype, **placement
            )
    except OSError as error:
        raise ConfigError(_not_found_message(weights, error)) from error
    if adapter:
        from peft import PeftModel

        # Merged for inference: one plain model, as fast as a merged save and loadable by every stage.
        with one_build_at_a_time():
            model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
        logger.info("loaded adapter %s onto its base model %s", adapter, weights)
    if device is not None and quantization_config is None:
        model = model.to(resolve_device(device))
    from simpo_core.threads import apply_num_threads

    apply_num_threads(None, model)  # evaluation and generation share the cores as training does
    return model, tokenizer


def _log_remote_code(source: str, trust_remote_code: bool) -> None:
    if trust_remote_code:
        logger.warning("trust_remote_code is ON for %s: code shipped with the model will run", source)


def _not_found_message(source: str, error: Exception) -> str:
    return (
        f"could not load model {source!r}: {error}. Offline mode is on by default "
        "(HF_HUB_OFFLINE=1): pass a local folder, 'tiny', or a hub id already in the "
        "Hugging Face cache, or set HF_HUB_OFFLINE=0 where the hub is reachable. "
        "Weights must be safetensors."
    )


PROVENANCE_FILE = "simpo_provenance.json"


def write_provenance(model_dir: str | Path, base_model: str) -> Path:
    """Record which starting model a trained folder came from, so evaluation can compare."""
    import json

    from simpo_core import __version__

    base = (
        base_model
        if base_model in EMBEDDED_MODELS or not Path(base_model).exists()
        else str(Path(base_model).resolve())
    )
    path = Path(model_dir) / PROVENANCE_FILE
    path.write_text(json.dumps({"base_model": base, "trained_with": f"simpo-pipeline {__version__}"}, indent=1))
    return path


def read_base_model(model_dir: str | Path) -> str | None:
    """The starting model recorded by `write_provenance`, or None for other folders."""
    import json

    path = Path(model_dir) / PROVENANCE_FILE
    if not path.is_file():
        return None
    return json.loads(path.read_text()).get("base_model")
