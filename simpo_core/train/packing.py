"""Padding-free batches: the 2B sequences of B pairs packed end to end in one row.

Padding a batch to its longest sequence wastes the matmul work of every pad token (about a
third of the tokens when responses range from 32 to 224 tokens). Packing puts the
sequences one after another in a `(1, L)` row, `L = Σ lengths`; positions restart at 0 for
each sequence, and attention is computed per sequence, so no token sees another sequence.

Attention stays within each sequence through an attention function registered with
transformers (`PACKED_SDPA`). For a packed call (`cu_seq_lens_q` given) on CUDA it runs
FlexAttention, compiled once per process, with a document-causal block mask (token q sees kv
iff both are in the same sequence and kv <= q) built once per forward and shared by every
layer, in one dtype (`packed_flex.attention_dtype`); elsewhere (CPU), or where FlexAttention is missing,
it runs PyTorch's causal SDPA on each sequence in turn (`set_packed_attention_backend`
overrides the choice). A call whose FlexAttention fails runs the loop instead, counted
(`packed_attention_fallbacks`) and logged once per cause; the next call tries FlexAttention
again, and backend `flex` makes the failure an error. For any other call it is exactly
transformers' SDPA, so a model switched to it behaves as before everywhere else.
Flash-attention models pack natively.
"""

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import torch

from simpo_core.train.loss import IGNORE_INDEX
from simpo_core.train.packed_flex import flex_available, flex_packed, packed_row
from simpo_core.train.tokenization import EncodedPair, pair_sequences

logger = logging.getLogger(__name__)

PACKED_SDPA = "simpo_packed_sdpa"
PACKED_ATTENTION_BACKENDS = ("auto", "flex", "loop")
_backend = "auto"
_logged_paths: set[str] = set()
_logged_failures: set[str] = set()
_fallbacks = 0  # packed calls that fell back to the loop after FlexAttention failed
_last_path = "none yet"

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
    return pack_sequences(pair_sequences(pairs))


def pack_sequences(sequences: Sequence[tuple[list[int], list[int]]]) -> dict[str, torch.Tensor]:
    """Pack N `(prompt, response)` sequences end to end into one `(1, L)` row: `input_ids`,
    `position_ids` (restarting at 0 per sequence), `labels` (the response tokens) and
    `cu_seq_lens` `(N + 1,)` int32 boundaries."""
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


def set_packed_attention_backend(backend: str) -> str:
    """Choose how packed calls run attention; returns the previous choice.

    Args:
        backend: `"auto"` (FlexAttention on CUDA, the per-sequence loop elsewhere), `"flex"`
            (FlexAttention on any device; off CUDA eager, materialising the scores, and
            forward only: torch has no CPU backward for it) or `"loop"` (causal SDPA per sequence).

    Raises:
        ValueError: an unknown backend.
    """
    global _backend
    if backend not in PACKED_ATTENTION_BACKENDS:
        raise ValueError(f"unknown packed attention backend {backend!r}; choose one of {PACKED_ATTENTION_BACKENDS}")
    previous, _backend = _backend, backend
    return previous


def _use_flex(query: torch.Tensor, dropout: float) -> bool:
    """Whether a packed call takes FlexAttention; logs each path the first time it is taken."""
    use_flex = _backend != "loop" and dropout == 0.0 and flex_available()
    if _backend == "auto":
        use_flex = use_flex and query.is_cuda
    elif _backend == "flex" and not use_flex:
        raise RuntimeError("packed attention backend 'flex' needs torch >= 2.5 (FlexAttention) and dropout 0")
    kind = "compiled" if query.is_cuda else "eager"
    _record_path(f"FlexAttention ({kind}, {query.device.type})" if use_flex else "loop")
    return use_flex


def _record_path(path: str) -> None:
    global _last_path
    _last_path = path
    if path not in _logged_paths:
        _logged_paths.add(path)
        logger.info("packed attention runs through %s", path)


def last_packed_attention_path() -> str:
    """How the latest packed call ran attention: "FlexAttention (compiled, cuda)", "loop", ..."""
    return _last_path


def packed_attention_fallbacks() -> int:
    """How many packed calls fell back to the loop because FlexAttention failed (this process)."""
    return _fallbacks


def _fall_back(error: Exception) -> None:
    """Count one fallback; log each distinct cause once. Not sticky: the next call tries again,
    so one transient failure does not move the rest of the process to the slow path."""
    global _fallbacks
    _fallbacks += 1
    cause = f"{type(error).__name__}: {error}"[:300]
    if cause not in _logged_failures:
        _logged_failures.add(cause)
        logger.warning("FlexAttention failed (%s); this call falls back to the per-sequence loop", cause)
    _record_path("loop (FlexAttention failed)")


def packed_sdpa_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """transformers attention function: causal attention within each packed sequence.

    A packed call runs FlexAttention with a document-causal block mask, or causal SDPA on each
    sequence in turn (see `set_packed_attention_backend`).

    Args:
        query, key, value: `(1, heads, L, head_dim)` (key/value may have fewer heads).
        kwargs: `cu_seq_lens_q` `(S + 1,)` sequence boundaries for a packed call; without
            it the call is passed to transformers' SDPA unchanged. `scaling`, `dropout`.

    Returns:
        `((1, L, heads, head_dim), None)`, as transformers' attention functions return.
    """
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    bounds = kwargs.pop("cu_seq_lens_q", None)
    if bounds is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    for name in ("cu_seq_lens_k", "max_length_q", "max_length_k", "position_ids", "is_causal"):
        kwargs.pop(name, None)
    row = packed_row(bounds)
    if _use_flex(query, kwargs.get("dropout", 0.0)):
        try:
            return flex_packed(query, key, value, row, kwargs.get("scaling")), None
        except Exception as error:  # a compiler or kernel failure: the loop below is exact, only slower
            if _backend == "flex":
                raise
            _fall_back(error)
    parts = [
        sdpa_attention_forward(
            module, query[:, :, s:e], key[:, :, s:e], value[:, :, s:e], None, is_causal=True, **kwargs
        )[0]
        for s, e in row.spans()
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
