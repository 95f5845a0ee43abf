"""FlexAttention on a packed row: the document-causal mask, built once per forward and shared
by every layer, and the attention call in one dtype.

`simpo_core.train.packing` decides when a packed call takes this path (CUDA by default,
`train.packed_attention`) and falls back to its exact per-sequence loop where it fails.
"""

import functools
import inspect
from collections.abc import Callable
from typing import Any

import torch


def document_causal_mask(bounds: torch.Tensor, length: int) -> Callable[..., torch.Tensor]:
    """FlexAttention `mask_mod` of a packed row: q attends to kv iff both lie in the same
    sequence and kv <= q.

    Args:
        bounds: `(S + 1,)` sequence boundaries (`cu_seq_lens`), 0 first, `length` last.
        length: L, the packed row's length.

    Returns:
        `mask_mod(batch, head, q_idx, kv_idx)`: a bool tensor, broadcast over the index tensors.
    """
    positions = torch.arange(length, device=bounds.device, dtype=bounds.dtype)
    # Sequence of each token: how many sequences end at or before it. No host sync.
    sequence_of_token = torch.searchsorted(bounds[1:].contiguous(), positions, right=True)

    def mask_mod(batch: Any, head: Any, q_idx: torch.Tensor, kv_idx: torch.Tensor) -> torch.Tensor:
        return (sequence_of_token[q_idx] == sequence_of_token[kv_idx]) & (kv_idx <= q_idx)

    return mask_mod


class PackedRow:
    """What every layer of one packed forward shares, derived once from its boundaries."""

    def __init__(self, bounds: torch.Tensor) -> None:
        self.bounds = bounds  # held, so the identity check in `packed_row` cannot see a reused id
        self.version = bounds._version
        self._spans: list[tuple[int, int]] | None = None
        self._block_mask: Any = None

    def spans(self) -> list[tuple[int, int]]:
        if self._spans is None:
            edges = self.bounds.tolist()  # the one host sync of the loop path, per forward
            self._spans = list(zip(edges[:-1], edges[1:]))
        return self._spans

    def block_mask(self, length: int) -> Any:
        if self._block_mask is None:
            from torch.nn.attention.flex_attention import create_block_mask

            mask_mod = document_causal_mask(self.bounds, length)
            # Builds an (L, L) bool mask once per forward (L² bytes), reduced to 128² blocks.
            self._block_mask = create_block_mask(mask_mod, None, None, length, length, device=self.bounds.device)
        return self._block_mask


# The last packed row seen. Every layer of a forward, and the recomputation of checkpointed
# layers in the backward (on autograd's own thread), pass the same boundaries tensor.
_last_row: PackedRow | None = None


def packed_row(bounds: torch.Tensor) -> PackedRow:
    global _last_row
    row = _last_row
    if row is None or row.bounds is not bounds or row.version != bounds._version:
        row = _last_row = PackedRow(bounds)
    return row


@functools.cache
def flex_available() -> bool:
    try:
        from torch.nn.attention.flex_attention import create_block_mask, flex_attention  # noqa: F401
    except ImportError:
        return False
    return "enable_gqa" in inspect.signature(flex_attention).parameters


@functools.cache
def compiled_flex() -> Callable[..., torch.Tensor]:
    from torch.nn.attention.flex_attention import flex_attention

    # Uncompiled flex materialises the scores; compiled, it is one fused kernel. L changes with
    # every batch: after its first change torch.compile recompiles once with L dynamic.
    return torch.compile(flex_attention)


def attention_dtype(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.dtype:
    """The one dtype FlexAttention computes in: the autocast dtype under autocast (what SDPA
    would run in there), else the common dtype of the three. Under bf16 autocast a Llama's
    rotary embedding hands attention float32 queries and keys beside bfloat16 values, which
    FlexAttention refuses."""
    device_type = query.device.type
    if torch.is_autocast_enabled(device_type):
        return torch.get_autocast_dtype(device_type)
    return torch.promote_types(torch.promote_types(query.dtype, key.dtype), value.dtype)


def flex_packed(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, row: PackedRow, scaling: float | None
) -> torch.Tensor:
    """`(1, L, heads, head_dim)` FlexAttention output with the document-causal block mask."""
    from torch.nn.attention.flex_attention import flex_attention

    attend = compiled_flex() if query.is_cuda else flex_attention
    mask = row.block_mask(query.shape[2])
    dtype = attention_dtype(query, key, value)
    query, key, value = query.to(dtype), key.to(dtype), value.to(dtype)
    output = attend(query, key, value, block_mask=mask, scale=scaling, enable_gqa=key.shape[1] != query.shape[1])
    return output.transpose(1, 2).contiguous()
