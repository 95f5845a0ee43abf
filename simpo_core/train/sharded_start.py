"""Sharded start-up: under `fsdp` no process ever holds the whole model.

The worker builds the starting model with its parameters on the meta device (`empty_model`):
shapes and dtypes, no storage; buffers (rotary `inv_freq`) are computed by the model's own
code as usual, they are small. `prepare_model` gives it LoRA adapters and gradient
checkpointing as it does any model (`add_adapters` keeps LoRA's seeded initial values),
`parallel.Parallel` shards it with `fully_shard` and then `materialise` allocates each
process's shards (`to_empty`) and fills them in the master dtype.

Each process reads the rows it owns from the checkpoint's safetensors files
(`safe_open(...).get_slice`) rather than rank 0 reading and scattering: FSDP2 shards every
parameter by rows, so a process's part of a tensor is one contiguous range of bytes in the file.
No collective is needed, no process holds more than one slice beyond its shards, and reading
is spread evenly over the processes.
"""

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

logger = logging.getLogger(__name__)

ATTRIBUTE = "simpo_sharded_start"  # where a model built by `empty_model` keeps its `ShardedStart`
META = torch.device("meta")


@dataclass
class ShardedStart:
    """Where the values of a model built on the meta device come from.

    Attributes:
        files: the checkpoint's tensor names and the safetensors file holding each.
        device: where the model trains (set by `prepare_model`); None until then.
        adapters: LoRA's seeded initial values by parameter name (set by `add_adapters`).
    """

    files: dict[str, Path]
    device: torch.device | None = None
    adapters: dict[str, torch.Tensor] = field(default_factory=dict)


def sharded_start(model: Any) -> ShardedStart | None:
    """The `ShardedStart` of a model built by `empty_model` and not yet materialised, else None."""
    return getattr(model, ATTRIBUTE, None)


def empty_starting_model(source: str, trust_remote_code: bool = False) -> tuple[Any, Any] | None:
    """`(model, tokenizer)` of a model source (`tiny`, a folder, a hub id in the local cache),
    the model built empty by `empty_model`; None where only a whole load will do (an adapter
    folder, a hub id not cached, a checkpoint without every parameter in safetensors)."""
    from simpo_core.models import is_adapter_folder, load_tokenizer, resolve_model_source
    from simpo_core.threads import apply_num_threads

    resolved = resolve_model_source(source)
    hub_id = not Path(resolved).is_dir()
    folder = _cached_snapshot(resolved) if hub_id else Path(resolved)
    if folder is None or is_adapter_folder(folder):
        return None
    model = empty_model(folder, trust_remote_code)
    if model is None:
        return None
    if hub_id:  # recorded by its id, as from_pretrained records it (LoRA adapters name their base by it)
        model.config._name_or_path = model.name_or_path = resolved
    apply_num_threads(None, model)  # as a loaded model sets them
    return model, load_tokenizer(str(folder), trust_remote_code)


def _cached_snapshot(hub_id: str) -> Path | None:
    """The local folder of a hub model in the Hugging Face cache, or None."""
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(hub_id, local_files_only=True))
    except Exception:  # not cached (or not a hub id): the whole load reports it
        return None


def empty_model(folder: str | Path, trust_remote_code: bool = False) -> Any | None:
    """A causal LM from the checkpoint in `folder`, its parameters on the meta device.

    Built from the folder's config in the checkpoint's dtype (as `from_pretrained` picks it),
    with its generation config, in eval mode as `from_pretrained` leaves it.

    Returns:
        The model (with its `ShardedStart`), or None when the folder's safetensors files do
        not hold every parameter: the caller then loads the whole model as before.
    """
    from transformers import AutoConfig, AutoModelForCausalLM, GenerationConfig

    from simpo_core.building import one_build_at_a_time

    files = tensor_files(Path(folder))
    if not files:
        return None
    config = AutoConfig.from_pretrained(folder, trust_remote_code=trust_remote_code)
    dtype = getattr(config, "dtype", None) or _first_floating_dtype(files)
    with one_build_at_a_time(), parameters_on_meta():
        model = AutoModelForCausalLM.from_config(config, dtype=dtype, trust_remote_code=trust_remote_code)
    missing = [name for name in _checkpoint_names(model) if name not in files]
    if missing:
        logger.info("%s lacks %s (and %d more): loading the whole model", folder, missing[0], len(missing) - 1)
        return None
    if (Path(folder) / "generation_config.json").is_file():
        model.generation_config = GenerationConfig.from_pretrained(folder)
    model.eval()
    setattr(model, ATTRIBUTE, ShardedStart(files))
    logger.info("built %s on the meta device; each process will read its own shards", type(model).__name__)
    return model


def tensor_files(folder: Path) -> dict[str, Path]:
    """Every tensor name of the safetensors checkpoint in `folder` and the file that holds it."""
    from safetensors import safe_open

    index = folder / "model.safetensors.index.json"
    if index.is_file():
        weight_map = json.loads(index.read_text())["weight_map"]
        return {name: folder / file for name, file in weight_map.items()}
    files: dict[str, Path] = {}
    for path in sorted(folder.glob("*.safetensors")):
        with safe_open(str(path), framework="pt") as handle:
            files.update(dict.fromkeys(handle.keys(), path))
    return files


@contextmanager
def parameters_on_meta() -> Iterator[None]:
    """Build modules with their parameters on the meta device and their buffers as usual.

    Every parameter a module registers is replaced by a meta tensor of its shape and dtype,
    so initialisers run on nothing; buffers (computed, not learned) keep their values. The
    switch is process-wide while the block runs: it is meant for a torchrun worker building
    its one model, not for threads building others beside it.
    """
    register = torch.nn.Module.register_parameter

    def register_on_meta(module: torch.nn.Module, name: str, param: torch.nn.Parameter | None) -> None:
        if param is not None and param.device != META:
            param = torch.nn.Parameter(param.to(META), requires_grad=param.requires_grad)
        register(module, name, param)

    torch.nn.Module.register_parameter = register_on_meta
    try:
        yield
    finally:
        torch.nn.Module.register_parameter = register


def add_adapters(model: Any, add_lora: Any) -> Any:
    """`add_lora(model)` on a model whose parameters are on the meta device, keeping the
    adapters' seeded initial values in its `ShardedStart` (the adapters end on meta too).

    peft creates adapters on the CPU, initialises them from the seeded generator and moves
    them to their base layer's device: meta would lose the values. So each meta parameter
    stands in as a CPU tensor of its shape that owns one element while peft runs (LoRA's
    default initialisation reads the base layer's shape and dtype, never its values).
    """
    start = sharded_start(model)
    stand_ins: dict[int, torch.nn.Parameter] = {}  # id(stand-in) -> the meta parameter
    for module in model.modules():
        for name, param in list(module._parameters.items()):
            if param is not None and param.device == META:
                stand_in = torch.nn.Parameter(torch.empty((), dtype=param.dtype).expand(param.shape))
                stand_ins[id(stand_in)] = param
                module._parameters[name] = stand_in
    model = add_lora(model)
    for prefix, module in model.named_modules():
        for name, param in list(module._parameters.items()):
            if param is None:
                continue
            if id(param) in stand_ins:  # a base parameter: back to meta, frozen or not as peft left it
                original = stand_ins[id(param)]
                original.requires_grad_(param.requires_grad)
                module._parameters[name] = original
            elif param.device != META:  # an adapter: keep its initial value, hold no storage
                start.adapters[f"{prefix}.{name}" if prefix else name] = param.detach()
                module._parameters[name] = torch.nn.Parameter(param.to(META), requires_grad=param.requires_grad)
    return model


def materialise(model: Any, shard_device: torch.device | None = None) -> None:
    """Give a model built by `empty_model` its values: allocate its parameters (each process's
    shards once `fully_shard` has cut them) and fill them from the checkpoint, in the dtype
    they have now (the master dtype); adapters get their seeded initial values and buffers
    keep theirs. The model no longer counts as an empty one after.

    Args:
        model: the (sharded) model, parameters on meta.
        shard_device: where the parameters live: the training device, or the CPU when FSDP
            offloads its shards there; buffers always go to the training device.
    """
    from torch.distributed.tensor import DTensor

    start = sharded_start(model)
    buffers = [  # computed at build (rotary inv_freq): to_empty would leave them empty
        (prefix, module, name, buffer)
        for prefix, module in model.named_modules()
        for name, buffer in module._buffers.items()
        if buffer is not None
    ]
    model.to_empty(device=shard_device or start.device)
    with torch.no_grad():
        for name, param in model.named_parameters():
            local = param.to_local() if isinstance(param, DTensor) else param
            if local.numel() == 0:  # more processes than rows: this one holds none
                continue
            start_row, stop_row = owned_rows(param)
            adapter = start.adapters.get(name)
            if adapter is None:
                value = _read_rows(start.files, checkpoint_key(name), (start_row, stop_row))
            else:
                value = adapter[start_row:stop_row]
            local.copy_(value.reshape(local.shape))  # casts to the master dtype on the way
    for prefix, module, name, buffer in buffers:
        key = checkpoint_key(f"{prefix}.{name}" if prefix else name)
        # A persistent buffer takes the checkpoint's value, as from_pretrained gives it.
        value = _read_rows(start.files, key, None) if key in start.files else buffer
        module._buffers[name] = value.to(start.device, buffer.dtype)
    for module in model.modules():
        module.__dict__.pop(ATTRIBUTE, None)
    logger.info("filled the shards of %d parameters from the checkpoint", len(list(model.parameters())))


def checkpoint_key(name: str) -> str:
    """The checkpoint tensor name of parameter `name` of a (peft-wrapped) model."""
    name = name.removeprefix("base_model.model.")
    return name.replace(".base_layer.", ".")


def owned_rows(param: torch.Tensor) -> tuple[int, int]:
    """The rows `[start, stop)` of the whole tensor that this process holds of `param`: a
    contiguous block under FSDP2's row sharding (torch.chunk's split), all of a plain tensor."""
    from torch.distributed.tensor import DTensor, Shard

    if not isinstance(param, DTensor):
        return 0, param.shape[0] if param.dim() else 1
    (placement,) = param.placements
    if not isinstance(placement, Shard) or placement.dim != 0:
        raise ValueError(f"expected FSDP's row sharding (Shard(0)) on one mesh dimension, got {param.placements}")
    rows, processes = param.shape[0], param.device_mesh.size()
    start = min(param.device_mesh.get_local_rank() * -(-rows // processes), rows)
    return start, start + param.to_local().shape[0]


def _read_rows(files: dict[str, Path], key: str, rows: tuple[int, int] | None) -> torch.Tensor:
    """Rows `[start, stop)` of checkpoint tensor `key` (all of it for None or a scalar), in its
    own dtype. The file is opened for this read alone: pages of a mapping left open would count
    as this process's memory until the end."""
    from safetensors import safe_open

    with safe_open(str(files[key]), framework="pt", device="cpu") as handle:
        tensor = handle.get_slice(key)
        if rows is None or not tensor.get_shape():
            return tensor[:]
        return tensor[rows[0] : rows[1]]


def _checkpoint_names(model: Any) -> list[str]:
    """The tensors a checkpoint must hold: each parameter once (tied ones by their first
    name) and each persistent buffer."""
    names = [name for name, _ in model.named_parameters()]
    persistent = set(model.state_dict())
    return names + [name for name, _ in model.named_buffers() if name in persistent]


def _first_floating_dtype(files: dict[str, Path]) -> torch.dtype:
    """The dtype of the checkpoint's first floating tensor (what `from_pretrained` falls back to)."""
    from safetensors import safe_open

    for name, path in files.items():
        with safe_open(str(path), framework="pt") as handle:
            dtype = handle.get_slice(name).get_dtype()
        if dtype in ("F32", "F16", "BF16", "F64"):
            return {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64}[dtype]
    return torch.float32
