"""Model forward → per-sequence log-probs, shared by training and evaluation.

One forward runs over chosen and rejected together: padded `(2B, T)`
(`tokenization.collate_pairs`) or, for models that allow it, packed end to end without
padding `(1, Σ lengths)` (`packing.pack_pairs`). Log-probs are computed only where labels
are set: the decoder's hidden states at those positions go through the output head in
chunks (`chunked_logps`), forward and backward, so no `(2B, T, V)` logits exist, nor
even `(response tokens, V)` ones. Models whose head does more than a linear layer (logit
soft-capping or scaling) take the plain path through `loss.batch_logps`.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

from simpo_core.train.chunked_logps import chunked_token_logps
from simpo_core.train.loss import IGNORE_INDEX, PairLogps, batch_logps
from simpo_core.train.packing import enable_packing, is_packed_ready, pack_pairs, packed_forward
from simpo_core.train.tokenization import EncodedPair, collate_pairs, encode_pairs, rows_from

# Config attributes that mean the logits are not simply `lm_head(hidden)`.
_NONLINEAR_HEAD_ATTRIBUTES = ("final_logit_softcapping", "logit_scale", "logits_scaling", "output_multiplier_scale")


def sequence_logps(model: Any, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed log-probs and token counts of each sequence's labelled tokens.

    Args:
        model: a causal LM (transformers or peft-wrapped).
        batch: padded — `input_ids`, `attention_mask`, `labels`, each `(N, T)`; or packed
            (`packing.pack_pairs`) — `input_ids`, `position_ids`, `labels` `(1, L)` and
            `cu_seq_lens` `(N + 1,)`; on the model's device.

    Returns:
        `(logps_sum, lengths)`, each `(N,)`; `logps_sum` is float32 and differentiable.

    Raises:
        ValueError: a packed batch for a model not switched to packed attention.
    """
    if "cu_seq_lens" in batch:
        return _packed_logps(model, batch)
    labels = batch["labels"]
    lengths = (labels[:, 1:] != IGNORE_INDEX).sum(-1)
    if _has_linear_head(model):
        hidden = model.get_decoder()(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False
        )[0]
        row_of_token = torch.arange(labels.shape[0], device=labels.device)[:, None].expand(-1, labels.shape[1] - 1)
        return _head_logps(model, hidden[:, :-1], labels[:, 1:], row_of_token, labels.shape[0]), lengths
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False).logits
    return batch_logps(logits, labels, average=False), lengths


def _packed_logps(model: Any, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Packed row → per-sequence sums. The shift never crosses a boundary usefully: the first
    token of every sequence is a prompt token, whose label is `IGNORE_INDEX`."""
    if not (is_packed_ready(model) and _has_linear_head(model)):
        raise ValueError("packed batches need a model switched with packing.enable_packing and a linear output head")
    bounds = batch["cu_seq_lens"]
    n_sequences = bounds.numel() - 1
    sizes = (bounds[1:] - bounds[:-1]).long()
    seq_of_token = torch.repeat_interleave(torch.arange(n_sequences, device=bounds.device), sizes)
    longest = int(sizes.max())
    with packed_forward():
        hidden = model.get_decoder()(
            input_ids=batch["input_ids"],
            position_ids=batch["position_ids"],
            use_cache=False,
            cu_seq_lens_q=bounds,
            cu_seq_lens_k=bounds,
            max_length_q=longest,
            max_length_k=longest,
        )[0]
    targets = batch["labels"][0, 1:]
    lengths = torch.zeros(n_sequences, dtype=torch.long, device=bounds.device)
    lengths.index_add_(0, seq_of_token[:-1], (targets != IGNORE_INDEX).long())
    return _head_logps(model, hidden[0, :-1], targets, seq_of_token[:-1], n_sequences), lengths


def _head_logps(
    model: Any, hidden: torch.Tensor, targets: torch.Tensor, sequence: torch.Tensor, n_sequences: int
) -> torch.Tensor:
    """Output head on labelled positions only, chunked, summed per sequence.

    Args:
        hidden: `(..., H)` hidden states; position t predicts `targets[t]`.
        targets: `(...)` next-token ids, `IGNORE_INDEX` where nothing is scored.
        sequence: `(...)` index of the sequence each position belongs to.
        n_sequences: N.

    Returns:
        `(N,)` float32 summed log-probs.
    """
    mask = targets != IGNORE_INDEX
    head = model.get_output_embeddings()
    token_logps = chunked_token_logps(hidden[mask], head.weight, targets[mask], bias=getattr(head, "bias", None))
    sums = torch.zeros(n_sequences, dtype=torch.float32, device=hidden.device)
    return sums.index_add(0, sequence[mask], token_logps)


def _has_linear_head(model: Any) -> bool:
    config = getattr(model, "config", None)
    if config is None or getattr(config, "is_encoder_decoder", False):
        return False
    if any(getattr(config, name, None) not in (None, 1, 1.0) for name in _NONLINEAR_HEAD_ATTRIBUTES):
        return False
    try:
        decoder, head = model.get_decoder(), model.get_output_embeddings()
    except (AttributeError, NotImplementedError, ValueError):
        return False
    return decoder is not model and isinstance(head, torch.nn.Linear)


def collate_for(model: Any, pairs: list[EncodedPair], pad_token_id: int) -> dict[str, torch.Tensor]:
    """The batch layout `model` computes fastest: packed when it is switched to packed
    attention (`packing.enable_packing`), padded otherwise."""
    if is_packed_ready(model) and _has_linear_head(model):
        return pack_pairs(pairs)
    return collate_pairs(pairs, pad_token_id)


@contextmanager
def packed_attention(model: Any) -> Iterator[None]:
    """Let `model` take packed batches inside the block; its attention setting is restored after.
    (For no-grad use: a backward that recomputes activations must happen inside the block.)"""
    config = getattr(model, "config", None)
    before = getattr(config, "_attn_implementation", None)
    enable_packing(model)
    try:
        yield
    finally:
        if config is not None and getattr(config, "_attn_implementation", None) != before:
            config._attn_implementation = before


def pair_logps(model: Any, batch: dict[str, torch.Tensor]) -> PairLogps:
    """Split one forward over 2B sequences (chosen first, then rejected) into B pairs.

    Args:
        model, batch: as in `sequence_logps`.

    Returns:
        `PairLogps` of `(B,)` summed log-probs (float32, differentiable) and token counts.
    """
    return split_pairs(*sequence_logps(model, batch))


def split_pairs(sums: torch.Tensor, lengths: torch.Tensor) -> PairLogps:
    """`(2B,)` per-sequence sums and counts, chosen first, as B pairs."""
    half = sums.shape[0] // 2
    return PairLogps(chosen=sums[:half], rejected=sums[half:], chosen_len=lengths[:half], rejected_len=lengths[half:])


def model_device(model: Any) -> torch.device:
    """The device of the model's first parameter (CPU for a model without parameters)."""
    return next((p.device for p in model.parameters()), torch.device("cpu"))


def compute_pair_logps(
    model: Any,
    tokenizer: Any,
    rows: Any,
    *,
    max_length: int,
    max_prompt_length: int,
    batch_size: int,
    average: bool = True,
) -> dict[str, torch.Tensor]:
    """Per-pair log-probs of chosen and rejected responses, exactly as training computes them.

    Args:
        model: causal LM; run in eval mode under `torch.no_grad()` (its mode is restored).
        tokenizer: the model's tokenizer.
        rows: list of canonical or flat dicts, or a pandas DataFrame / datasets.Dataset.
        max_length, max_prompt_length: truncation, as in `SimPOConfig`.
        batch_size: pairs per forward.
        average: mean log-prob per response token (SimPO's reward / β) when True, sum when False.

    Returns:
        On CPU, in input order: `chosen_logps`, `rejected_logps` `(N,)` float32 and
        `chosen_lengths`, `rejected_lengths` `(N,)` response token counts after truncation.

    Raises:
        DataError: a row is not a pair or a response is empty after truncation.
    """
    pairs = encode_pairs(tokenizer, rows_from(rows), max_length, max_prompt_length)
    device, was_training = model_device(model), model.training
    keys = ("chosen_logps", "rejected_logps", "chosen_lengths", "rejected_lengths")
    parts: dict[str, list[torch.Tensor]] = {key: [] for key in keys}
    model.eval()
    try:
        with torch.no_grad(), packed_attention(model):
            for start in range(0, len(pairs), batch_size):
                batch = collate_for(model, pairs[start : start + batch_size], tokenizer.pad_token_id)
                logps = pair_logps(model, {k: v.to(device) for k, v in batch.items()})
                for key, value in zip(keys, (logps.chosen, logps.rejected, logps.chosen_len, logps.rejected_len)):
                    parts[key].append(value.cpu())
    finally:
        model.train(was_training)
    out = {k: torch.cat(v) if v else torch.zeros(0) for k, v in parts.items()}
    if average:
        out["chosen_logps"] = out["chosen_logps"] / out["chosen_lengths"]
        out["rejected_logps"] = out["rejected_logps"] / out["rejected_lengths"]
    return out
