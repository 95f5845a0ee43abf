"""How the processes of one run share an optimizer step: torch's DDP or FSDP2.

One process trains the model directly (the fast path). Under torchrun the decoder and the
chunked output head are wrapped as one module (`PairForward`), so the engine sees every
parameter the loss uses:

- `ddp`: `DistributedDataParallel` keeps a whole copy of the model in every process and
  reduces gradients in buckets while the backward runs; `no_sync` skips the reduction on
  all but the last micro-batch of a step. Every process loaded the same checkpoint (or
  built the model from the same seed): instead of broadcasting rank 0's copy, the processes
  check that their parameters agree.
- `fsdp`: FSDP2 `fully_shard` on every decoder layer and on the root shards parameters,
  gradients and AdamW state across the processes; a layer's parameters are gathered just
  before it runs and freed after. A model built empty (`sharded_start`) is sharded first and
  each process then reads only its shards from the checkpoint; a whole model is cut from
  rank 0's weights.

Both reduce by summing, not averaging: every micro-batch already divides by the pair and
token counts of the whole step, so the summed gradient is exactly the one-process step's.
Every process runs the same number of micro-batches (FSDP gathers parameters collectively
in each forward; DDP reduces once per step): a process with fewer pairs pads its share
with a zero-weighted micro-batch.
"""

import inspect
import logging
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch

from simpo_core.errors import ConfigError
from simpo_core.train import distributed
from simpo_core.train.logps import PairLogps, model_device, pair_logps, sequence_logps, split_pairs
from simpo_core.train.sharded_start import materialise, sharded_start
from simpo_core.train.tokenization import EncodedPair

logger = logging.getLogger(__name__)

MicroBatch = tuple[list[EncodedPair], bool]  # (pairs, counts): False for padding that only keeps processes in step


class PairForward(torch.nn.Module):
    """The decoder and the chunked output head as one module: what DDP and FSDP wrap."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        return sequence_logps(self.model, batch)


class Parallel:
    """The model as this process trains it, under one process, `ddp` or `fsdp`.

    Args:
        model: the prepared model (on its device, in the master dtype, with LoRA and
            gradient checkpointing already applied), or one built empty by `sharded_start`
            (its parameters on the meta device), which gets its values here.
        strategy: `ddp` or `fsdp`; ignored by a single process.
        precision: the concrete precision policy (`fp32`, `bf16-mixed`, `bf16-pure`).
        cpu_offload: under `fsdp` on GPUs, keep shards and optimizer state in CPU memory.

    Raises:
        ConfigError: `fsdp` for a model whose decoder has no list of layers to shard.
    """

    def __init__(self, model: Any, strategy: str, precision: str, cpu_offload: bool = False) -> None:
        self.model = model
        self.world_size, self.rank = distributed.world_size(), distributed.rank()
        # Under torchrun the engine wraps even one process (what a one-GPU check of the engine runs).
        self.strategy = strategy if distributed.in_group() else "single"
        self.module: torch.nn.Module | None = None
        start = sharded_start(model)
        if self.strategy == "fsdp":
            if start is None:
                distributed.broadcast_parameters(model)  # shards are cut from rank 0's weights
            device = start.device if start is not None else model_device(model)
            self.module = _fully_shard(model, precision, cpu_offload, device)
            if start is not None:  # each process allocates and reads its own shards only
                materialise(model, torch.device("cpu") if cpu_offload else device)
        elif start is not None:  # one process (or ddp): the whole model, on its device
            materialise(model)
        if self.strategy == "ddp":
            self.module = _data_parallel(model)
        if self.module is not None:
            logger.info("training under %s in %d processes", self.strategy, self.world_size)

    @property
    def sharded(self) -> bool:
        """Parameters are split across processes (their full values exist nowhere at rest)."""
        return self.strategy == "fsdp"

    def micro_batches(self, pairs: Sequence[EncodedPair], size: int) -> list[MicroBatch]:
        """This process's share of a step's `pairs`, in micro-batches of at most `size`; as
        many on every process, the missing ones padding (`counts` False)."""
        return plan_micro_batches(pairs, size, self.rank, self.world_size)

    def pair_logps(self, batch: dict[str, torch.Tensor]) -> PairLogps:
        """Log-probs of one micro-batch, through the wrapped module when there is one."""
        if self.module is None:
            return pair_logps(self.model, batch)
        return split_pairs(*self.module(batch))

    @contextmanager
    def gradient_sync(self, enabled: bool) -> Iterator[None]:
        """Reduce gradients in the backward run inside this block only when `enabled`
        (the last micro-batch of a step); the others accumulate locally."""
        if self.strategy == "ddp" and not enabled:
            with self.module.no_sync():
                yield
        elif self.strategy == "fsdp":
            self.module.set_requires_gradient_sync(enabled)
            try:
                yield
            finally:
                self.module.set_requires_gradient_sync(True)
        else:
            yield

    def clip_gradients(self, parameters: Sequence[torch.nn.Parameter], max_norm: float) -> float:
        """Clip the gradients' global norm to `max_norm` (over all shards); return the norm before."""
        norm = torch.nn.utils.clip_grad_norm_(parameters, max_norm)
        return float(_full(norm))

    def gather_full_model(self) -> None:
        """Under `fsdp`, give the main process an ordinary copy of the trained model in CPU
        memory (for `save_pretrained`); collective. The wrapped model is done training after."""
        if not self.sharded:
            return
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        full = get_model_state_dict(self.model, options=options)  # filled on rank 0 only
        if self.rank == 0:
            _replace_parameters(self.model, full)


def plan_micro_batches(pairs: Sequence[EncodedPair], size: int, rank: int, world_size: int) -> list[MicroBatch]:
    """Process `rank`'s contiguous share of `pairs` in micro-batches of at most `size`,
    padded to the count of the largest share with zero-weighted copies of the first pair."""
    mine = distributed.shard(pairs, rank, world_size)
    batches = [(list(mine[start : start + size]), True) for start in range(0, len(mine), size)]
    if world_size > 1 and pairs:
        most = math.ceil(math.ceil(len(pairs) / world_size) / size)
        batches += [([pairs[0]], False)] * (most - len(batches))
    return batches


def _full(tensor: torch.Tensor) -> torch.Tensor:
    from torch.distributed.tensor import DTensor

    return tensor.full_tensor() if isinstance(tensor, DTensor) else tensor


def _data_parallel(model: Any) -> torch.nn.Module:
    from torch.nn.parallel import DistributedDataParallel

    device = model_device(model)
    distributed.check_replicas_agree(model)  # what DDP's start-up broadcast (skipped: init_sync) would hide
    # No buffer changes in training: a broadcast per forward would be wasted (the option's name changed in torch 2.12).
    renamed = "forward_sync_buffers" in inspect.signature(DistributedDataParallel.__init__).parameters
    no_buffer_sync = {"forward_sync_buffers" if renamed else "broadcast_buffers": False}
    wrapped = DistributedDataParallel(
        PairForward(model),
        device_ids=[device.index] if device.type == "cuda" else None,
        init_sync=False,  # every process already holds the same weights: no copy of rank 0's is sent
        **no_buffer_sync,
    )
    wrapped.register_comm_hook(None, _sum_buckets)
    return wrapped


def _sum_buckets(state: Any, bucket: torch.distributed.GradBucket) -> torch.futures.Future[torch.Tensor]:
    """DDP communication hook: sum each gradient bucket over the processes (DDP averages by default)."""
    work = torch.distributed.all_reduce(bucket.buffer(), async_op=True)
    return work.get_future().then(lambda future: future.value()[0])


def _fully_shard(model: Any, precision: str, cpu_offload: bool, device: torch.device) -> torch.nn.Module:
    from torch.distributed.fsdp import CPUOffloadPolicy, FSDPModule, MixedPrecisionPolicy, fully_shard

    layers = getattr(model.get_decoder(), "layers", None)
    if not isinstance(layers, torch.nn.ModuleList) or not len(layers):
        raise ConfigError(
            f"strategy fsdp shards each decoder layer, but {type(model).__name__}'s decoder has no `layers` list; "
            "use strategy: ddp"
        )
    options: dict[str, Any] = {}
    if precision == "bf16-mixed":  # float32 shards; layers compute in bfloat16; gradients reduced in float32
        options["mp_policy"] = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    if cpu_offload:
        if device.type != "cuda":
            raise ConfigError("fsdp_cpu_offload moves GPU shards to CPU memory; set it only when training on GPUs")
        options["offload_policy"] = CPUOffloadPolicy()
    for layer in layers:
        fully_shard(layer, **options)
    root = fully_shard(PairForward(model), **options)
    for module in root.modules():
        if isinstance(module, FSDPModule):
            module.set_gradient_divide_factor(1.0)  # sum: micro-batches already divide by the step's counts
            module.set_force_sum_reduction_for_comms(True)  # gloo has no AVG or PREMUL_SUM reduction
    return root


def _replace_parameters(model: torch.nn.Module, full: dict[str, torch.Tensor]) -> None:
    """Swap every sharded parameter of `model` for the ordinary tensor in `full` (by name),
    keeping parameters shared between modules (tied embeddings) shared."""
    replacement: dict[int, torch.nn.Parameter] = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        if id(param) not in replacement and name in full:
            replacement[id(param)] = torch.nn.Parameter(full[name], requires_grad=param.requires_grad)
    for module in model.modules():
        for name, param in list(module._parameters.items()):
            if param is not None and id(param) in replacement:
                module._parameters[name] = replacement[id(param)]
