"""Padding-free batches: the 2B sequences of B pairs packed end to end in one row.

Padding a batch to its longest sequence wastes the matmul work of every pad token (about a
third of the tokens when responses range from 32 to 224 tokens). Packing puts the
sequences one after another in a `(1, L)` row, `L = Σ lengths`; positions restart at 0 for
each sequence, and attention is computed per sequence, so no token sees another sequence.

Attention runs per sequence through an attention function registered with transformers
(`PACKED_SDPA`): for a packed call (`cu_seq_lens_q` given) it runs PyTorch's causal SDPA
on each sequence; for any other call it is exactly transformers' SDPA, so a model switched
to it behaves as before everywhere else. Flash-attention models pack natively.
"""

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import torch

from simpo_core.train.loss import IGNORE_INDEX
from simpo_core.train.tokenization import EncodedPair

PACKED_SDPA = "simpo_packed_sdpa"

# Model families whose decoders take per-token `position_ids` and route attention through
# the transformers attention interface; others use padded batches (always correct).
PACKABLE_MODEL_TYPES = frozenset({"llama", "mistral", "qwen2", "qwen3", "gemma", "phi3", "olmo", "olmo2", "granite"})


def pack_pairs(pairs: Sequence[EncodedPair]) -> dict[str, torch.Tensor]:
    """Pack B pairs into one `(1, L)` row: chosen 0..B-1, then rejected B..2B-1.

    Returns:
        `input_ids`, `position_ids`, `labels` `(1, L)` (labels are `IGNORE_INDEX` on prompt
        tokens, so no label crosses a sequence boundary after the shift: each sequence
        starts with its prompt); `cu_seq_lens` `(2B + 1,)` int32 sequence boundaries.
    """
    sequences = [(p.prompt_ids, p.chosen_ids) for p in pairs] + [(p.prompt_ids, p.rejected_ids) for p in pairs]
    ids: list[int] = []
    labels: list[int] = []
    positions: list[int] = []
    bounds = [0]
    for prompt, response in sequences:
        ids += prompt + response
        labels += [IGNORE_INDEX] * len(prompt) + response
        positions += range(len(prompt) + len(response))
        bounds.append(len(ids))
    return {
        "input_ids": torch.tensor([ids], dtype=torch.long),
        "position_ids": torch.tensor([positions], dtype=torch.long),
        "labels": torch.tensor([labels], dtype=torch.long),
        "cu_seq_lens": torch.tensor(bounds, dtype=torch.int32),
    }


def packed_sdpa_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """transformers attention function: causal SDPA per packed sequence.

    Args:
        query, key, value: `(1, heads, L, head_dim)` (key/value may have fewer heads).
        kwargs: `cu_seq_lens_q` `(S + 1,)` sequence boundaries for a packed call; without
            it the call is passed to transformers' SDPA unchanged.

    Returns:
        `((1, L, heads, head_dim), None)`, as transformers' attention functions return.
    """
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    bounds = kwargs.pop("cu_seq_lens_q", None)
    if bounds is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    for name in ("cu_seq_lens_k", "max_length_q", "max_length_k", "position_ids", "is_causal"):
        kwargs.pop(name, None)
    bounds = bounds.tolist()
    parts = [
        sdpa_attention_forward(
            module, query[:, :, s:e], key[:, :, s:e], value[:, :, s:e], None, is_causal=True, **kwargs
        )[0]
        for s, e in zip(bounds[:-1], bounds[1:])
    ]
    return torch.cat(parts, dim=1), None


# True while a packed forward builds its masks: the per-sequence attention needs none, and a
# dense (L, L) block mask would cost more to build than the attention it describes.
_PACKED_FORWARD: ContextVar[bool] = ContextVar("packed_forward", default=False)


@contextmanager
def packed_forward() -> Iterator[None]:
    """Mark a decoder call on a packed batch (see `_packed_mask`)."""
    token = _PACKED_FORWARD.set(True)
    try:
        yield
    finally:
        _PACKED_FORWARD.reset(token)


def _packed_mask(*args: Any, **kwargs: Any) -> torch.Tensor | None:
    """SDPA's mask for unpacked calls; none for packed ones (their attention ignores it)."""
    from transformers.masking_utils import sdpa_mask

    return None if _PACKED_FORWARD.get() else sdpa_mask(*args, **kwargs)


def _register() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(PACKED_SDPA, packed_sdpa_attention)
    AttentionMaskInterface.register(PACKED_SDPA, _packed_mask)


def enable_packing(model: Any) -> bool:
    """Switch `model` to per-sequence attention where that is safe; True when packed batches
    may be used. Idempotent; the model computes exactly as before on unpacked inputs.

    Flash-attention models are left as they are (they read `cu_seq_lens_*` themselves).
    Models outside `PACKABLE_MODEL_TYPES`, with sliding windows or attention soft-capping
    keep padded batches.
    """
    config = getattr(model, "config", None)
    if config is None or getattr(config, "model_type", None) not in PACKABLE_MODEL_TYPES:
        return False
    if getattr(config, "sliding_window", None) or getattr(config, "attn_logit_softcapping", None):
        return False
    implementation = getattr(config, "_attn_implementation", None) or "eager"
    if implementation.startswith("flash_attention") or implementation == PACKED_SDPA:
        return True
    if implementation not in ("sdpa", "eager"):
        return False
    _register()
    config._attn_implementation = PACKED_SDPA
    return True


def is_packed_ready(model: Any) -> bool:
    """True when `model` currently computes packed batches correctly (see `enable_packing`)."""
    implementation = getattr(getattr(model, "config", None), "_attn_implementation", None) or ""
    return implementation == PACKED_SDPA or implementation.startswith("flash_attention")
