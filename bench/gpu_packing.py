"""gpu-check stage `packing`: packed rows give the padded batch's log-probs and gradients, through
FlexAttention under bf16-mixed, with a tolerance shown to catch a masking bug.

The ~100M Llama (float32 master weights, bfloat16 autocast on CUDA: the trainer's bf16-mixed)
computes the same pairs three ways: padded (transformers' SDPA), packed through FlexAttention
and packed through the per-sequence loop. A fourth, deliberately wrong way is the control: the
packed row under one causal mask, so each sequence also sees the ones before it (what a broken
document mask computes). The check passes only when packed is within `TOLERANCE` of padded
and the control is at least `CONTROL_MARGIN` times further away.
"""

import time
from typing import Any

from gpu_common import Checks, Context, small_llama, synchronize, varied_pairs

# Nats per labelled token, per sequence, by precision. Measured on the ~100M shape (8 pairs):
# packed vs padded about 1.5e-3 under bf16 autocast and 1e-6 in float32; the whole-row causal
# control about 0.12 (0.02 on the dry run's tiny model).
TOLERANCE = {"bf16-mixed": 1e-2, "fp32": 1e-3}
CONTROL_MARGIN = 4.0
GRADIENT_TOLERANCE = 5e-2  # relative L2 gap of layer 0's query-projection gradient


def _autocast(ctx: Context) -> Any:
    import torch

    from simpo_core.train.precision import autocast

    return autocast(ctx.precision, torch.device(ctx.device))


def _timed_logps(ctx: Context, model: Any, batch: dict, tokens: int) -> dict:
    """Summed log-probs of every sequence and forward tokens/s (no grad; the first call warms up
    and compiles, then `repeats` timed calls)."""
    import torch

    from simpo_core.train.logps import sequence_logps

    repeats = 5 if ctx.cuda else 1
    with torch.no_grad(), _autocast(ctx):
        sums, lengths = sequence_logps(model, batch)
        synchronize(ctx)
        start = time.perf_counter()
        for _ in range(repeats):
            sums, lengths = sequence_logps(model, batch)
        synchronize(ctx)
    seconds = time.perf_counter() - start
    return {"logps": sums.float().cpu(), "lengths": lengths.cpu(), "tokens_per_s": repeats * tokens / seconds}


def _gradient(ctx: Context, model: Any, batch: dict) -> Any:
    """Gradient of layer 0's query projection from one backward of the summed log-probs."""
    from simpo_core.train.logps import sequence_logps

    model.zero_grad(set_to_none=True)
    with _autocast(ctx):
        sums, _ = sequence_logps(model, batch)
    sums.float().sum().backward()
    return model.model.layers[0].self_attn.q_proj.weight.grad.float().cpu()


def _whole_row_causal(ctx: Context, model: Any, batch: dict) -> Any:
    """The control: per-sequence log-prob sums of the packed row under one causal mask. The
    explicit all-ones mask keeps transformers from reading the sequences off `position_ids`."""
    import torch

    from simpo_core.train.loss import IGNORE_INDEX

    ids = batch["input_ids"]
    with torch.no_grad(), _autocast(ctx):
        logits = model(
            input_ids=ids, position_ids=batch["position_ids"], attention_mask=torch.ones_like(ids), use_cache=False
        ).logits[0, :-1]
    targets = batch["labels"][0, 1:]
    scored = targets != IGNORE_INDEX
    token = torch.zeros(targets.shape, device=logits.device)
    token[scored] = logits[scored].float().log_softmax(-1).gather(-1, targets[scored, None])[:, 0]
    bounds = batch["cu_seq_lens"].long()
    sequence = torch.repeat_interleave(torch.arange(bounds.numel() - 1, device=ids.device), bounds.diff())[:-1]
    return torch.zeros(bounds.numel() - 1, device=ids.device).index_add(0, sequence, token).cpu()


def _gap(sums: Any, reference: Any, lengths: Any) -> float:
    """Largest per-token gap of one sequence's summed log-prob: |Δ sum| / scored tokens."""
    return ((sums - reference).abs() / lengths.clamp(min=1)).max().item()


def _relative(gradient: Any, reference: Any) -> float:
    return ((gradient - reference).norm() / reference.norm()).item()


def _batches(ctx: Context, vocab: int) -> tuple[dict, dict, int]:
    """The padded and the packed batch of the same pairs, on the device, and their tokens."""
    from trainer_workload import build_tokenizer

    from simpo_core.train.packing import pack_pairs
    from simpo_core.train.tokenization import collate_pairs, encode_pairs

    sizes = ctx.sizes
    longest = sizes.pack_lengths[1]
    pairs = encode_pairs(
        build_tokenizer(vocab), varied_pairs(sizes.pack_pairs, vocab, sizes.pack_lengths), longest, longest // 2
    )
    tokens = sum(len(p.chosen_ids) + len(p.rejected_ids) + 2 * len(p.prompt_ids) for p in pairs)
    padded = {k: v.to(ctx.device) for k, v in collate_pairs(pairs, 0).items()}
    packed = {k: v.to(ctx.device) for k, v in pack_pairs(pairs).items()}
    return padded, packed, tokens


def stage_packing(ctx: Context, figures: dict, checks: Checks) -> None:
    """Packed (FlexAttention, loop) against padded: log-probs, gradients, tokens/s, the path taken."""
    from simpo_core.train.logps import packed_attention
    from simpo_core.train.packing import packed_attention_fallbacks, set_packed_attention_backend

    vocab = ctx.sizes.pack_vocab
    model = small_llama(vocab, **ctx.sizes.model).to(ctx.device).eval()
    padded, packed, tokens = _batches(ctx, vocab)
    figures.update(precision=ctx.precision, sequences=int(packed["cu_seq_lens"].numel() - 1), tokens=tokens)
    runs = {"padded": _timed_logps(ctx, model, padded, tokens)}
    grads = {"padded": _gradient(ctx, model, padded)}
    fallbacks = packed_attention_fallbacks()
    # auto is the trainer's choice (compiled FlexAttention on CUDA); off CUDA, flex runs eager, forward only.
    flex_backend = "auto" if ctx.cuda else "flex"
    try:
        with packed_attention(model):
            _packed_runs(ctx, model, packed, tokens, flex_backend, runs, grads, figures, checks)
    finally:
        set_packed_attention_backend("auto")
    figures["attention_fallbacks"] = packed_attention_fallbacks() - fallbacks
    checks.require(figures["attention_fallbacks"] == 0, "FlexAttention failed and fell back to the loop")
    runs["control"] = {"logps": _whole_row_causal(ctx, model, packed)}
    _compare(runs, grads, TOLERANCE[ctx.precision], figures, checks)


def _packed_runs(
    ctx: Context, model: Any, batch: dict, tokens: int, flex_backend: str, runs: dict, grads: dict, figures: dict,
    checks: Checks,
) -> None:  # fmt: skip
    """The packed row through FlexAttention, then the loop: log-probs, path after the forward
    and (CUDA) after the backward, gradients, and graphs compiled for more row lengths."""
    from simpo_core.train.packing import last_packed_attention_path, set_packed_attention_backend

    expected = "FlexAttention (compiled, cuda)" if ctx.cuda else "FlexAttention (eager, cpu)"
    set_packed_attention_backend(flex_backend)
    runs["packed"] = _timed_logps(ctx, model, batch, tokens)
    figures["path_forward"] = last_packed_attention_path()
    checks.require(figures["path_forward"] == expected, f"the packed forward ran through {figures['path_forward']!r}")
    if ctx.cuda:
        grads["packed"] = _gradient(ctx, model, batch)
        figures["path_backward"] = last_packed_attention_path()
        ok = figures["path_backward"] == expected
        checks.require(ok, f"the packed backward ran through {figures['path_backward']!r}")
        figures["new_graphs_over_3_lengths"] = _recompiles(ctx, model, batch)
    else:
        figures["path_backward"] = "skipped: FlexAttention has no CPU backward in torch"
    set_packed_attention_backend("loop")
    runs["packed_loop"] = _timed_logps(ctx, model, batch, tokens)
    grads["packed_loop"] = _gradient(ctx, model, batch)


def _recompiles(ctx: Context, model: Any, batch: dict) -> int:
    """Graphs torch.compile adds over three more packed row lengths (1 expected: L turns dynamic)."""
    import torch
    from torch._dynamo.utils import counters

    from simpo_core.train.logps import sequence_logps

    before = counters["stats"]["unique_graphs"]
    bounds = batch["cu_seq_lens"]
    with torch.no_grad(), _autocast(ctx):
        for n in (3, 5, 7):  # the first n sequences, a shorter row each time
            end = int(bounds[min(n, bounds.numel() - 1)])
            part = {k: batch[k][:, :end] for k in ("input_ids", "position_ids", "labels")}
            sequence_logps(model, {**part, "cu_seq_lens": bounds[: min(n, bounds.numel() - 1) + 1]})
    return counters["stats"]["unique_graphs"] - before


def _compare(runs: dict, grads: dict, tolerance: float, figures: dict, checks: Checks) -> None:
    """Gaps to padded of each packed path and of the control; gradient gaps; tokens/s."""
    reference, lengths = runs["padded"]["logps"], runs["padded"]["lengths"]
    gaps = {name: _gap(runs[name]["logps"], reference, lengths) for name in ("packed", "packed_loop", "control")}
    figures.update({f"gap_{name}": value for name, value in gaps.items()}, tolerance=tolerance)
    for name in ("packed", "packed_loop"):
        checks.require(gaps[name] <= tolerance, f"{name} log-probs differ from padded by {gaps[name]:.3g}/token")
    sensitive = gaps["control"] >= CONTROL_MARGIN * tolerance
    checks.require(sensitive, f"a whole-row causal mask moves log-probs only {gaps['control']:.3g}/token: too close")
    for name in ("packed", "packed_loop"):
        if name in grads:
            figures[f"grad_gap_{name}"] = gap = _relative(grads[name], grads["padded"])
            checks.require(gap <= GRADIENT_TOLERANCE, f"{name} gradient differs from padded by {gap:.3g} (relative)")
    figures.update({f"{k}_tokens_per_s": round(v["tokens_per_s"]) for k, v in runs.items() if "tokens_per_s" in v})
