"""Model forward → per-sequence log-probs, shared by training and evaluation.

One forward runs over chosen and rejected together (`(2B, T)`, see
`tokenization.collate_pairs`). Log-probs are computed only where labels are set: the
decoder's hidden states at those positions go through the output head in chunks, so the
full `(2B, T, V)` logits are never built. Models whose head does more than a linear layer
(logit soft-capping or scaling) take the plain path through `loss.batch_logps`.
"""

from typing import Any

import torch

from simpo_core.loss import IGNORE_INDEX, batch_logps
from simpo_core.tokenization import collate_pairs, encode_pairs, rows_from

# Rows of hidden states sent through the output head at once: bounds the (rows, V) logits.
HEAD_CHUNK_ROWS = 1024

# Config attributes that mean the logits are not simply `lm_head(hidden)`.
_NONLINEAR_HEAD_ATTRIBUTES = ("final_logit_softcapping", "logit_scale", "logits_scaling", "output_multiplier_scale")


def sequence_logps(model: Any, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed log-probs and token counts of each sequence's labelled tokens.

    Args:
        model: a causal LM (transformers or peft-wrapped).
        batch: `input_ids`, `attention_mask`, `labels`, each `(N, T)` on the model's device.

    Returns:
        `(logps_sum, lengths)`, each `(N,)`; `logps_sum` is float32 and differentiable.
    """
    labels = batch["labels"]
    lengths = (labels[:, 1:] != IGNORE_INDEX).sum(-1)
    if _has_linear_head(model):
        return _selected_logps(model, batch), lengths
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False).logits
    return batch_logps(logits, labels, average=False), lengths


def _has_linear_head(model: Any) -> bool:
    config = getattr(model, "config", None)
    if config is None or getattr(config, "is_encoder_decoder", False):
        return False
    if any(getattr(config, name, None) not in (None, 1, 1.0) for name in _NONLINEAR_HEAD_ATTRIBUTES):
        return False
    try:
        return model.get_decoder() is not model and model.get_output_embeddings() is not None
    except (AttributeError, NotImplementedError, ValueError):
        return False


def _selected_logps(model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Decoder hidden states → output head on labelled positions only → summed log-probs."""
    outputs = model.get_decoder()(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False)
    hidden = outputs[0][:, :-1, :]  # position t predicts token t + 1
    targets = batch["labels"][:, 1:]
    mask = targets != IGNORE_INDEX
    rows = mask.nonzero(as_tuple=True)[0]  # which sequence each selected position belongs to
    selected_hidden, selected_targets = hidden[mask], targets[mask]
    head = model.get_output_embeddings()
    token_logps = []
    for start in range(0, selected_targets.numel(), HEAD_CHUNK_ROWS):
        logits = head(selected_hidden[start : start + HEAD_CHUNK_ROWS]).float()
        chunk_targets = selected_targets[start : start + HEAD_CHUNK_ROWS]
        picked = logits.gather(1, chunk_targets.unsqueeze(1)).squeeze(1)
        token_logps.append(picked - logits.logsumexp(-1))
    flat = torch.cat(token_logps) if token_logps else hidden.new_zeros(0, dtype=torch.float32)
    sums = torch.zeros(hidden.shape[0], dtype=torch.float32, device=hidden.device)
    return sums.index_add(0, rows, flat)


def pair_logps(model: Any, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Split one `(2B, T)` forward into chosen and rejected halves.

    Returns:
        `chosen_logps`, `rejected_logps` (summed, `(B,)`, differentiable) and
        `chosen_lengths`, `rejected_lengths` (`(B,)` response token counts).
    """
    sums, lengths = sequence_logps(model, batch)
    half = sums.shape[0] // 2
    return {
        "chosen_logps": sums[:half],
        "rejected_logps": sums[half:],
        "chosen_lengths": lengths[:half],
        "rejected_lengths": lengths[half:],
    }


def model_device(model: Any) -> torch.device:
    """The device of the model's first parameter (CPU for a model without parameters)."""
    return next((p.device for p in model.parameters()), torch.device("cpu"))


def compute_pair_logps(
    model: Any,
    tokenizer: Any,
    rows: Any,
    *,
    max_length: int = 512,
    max_prompt_length: int = 256,
    batch_size: int = 8,
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
    parts: dict[str, list[torch.Tensor]] = {k: [] for k in ("chosen_logps", "rejected_logps", "chosen_lengths", "rejected_lengths")}
    model.eval()
    try:
        with torch.no_grad():
            for start in range(0, len(pairs), batch_size):
                batch = collate_pairs(pairs[start : start + batch_size], tokenizer.pad_token_id)
                result = pair_logps(model, {k: v.to(device) for k, v in batch.items()})
                for key, value in result.items():
                    parts[key].append(value.cpu())
    finally:
        model.train(was_training)
    out = {k: torch.cat(v) if v else torch.zeros(0) for k, v in parts.items()}
    if average:
        out["chosen_logps"] = out["chosen_logps"] / out["chosen_lengths"]
        out["rejected_logps"] = out["rejected_logps"] / out["rejected_lengths"]
    return out
