"""Token log-probs through the output head in chunks, forward and backward.

`log π(y_t | ·) = h_t·w_{y_t} − logsumexp_v(h_t·w_v)` needs the whole row of logits, so
a plain `log_softmax(lm_head(h))` keeps `(N, V)` float32 logits alive for the backward:
with V = 128k that is 0.5 MB per token, gigabytes per batch. Here the forward keeps only
the hidden states and one number per token (the logsumexp); the backward recomputes each
chunk's logits, turns them into the gradient in place, and folds it into the gradients of
the hidden states and the head weight. At any time one `(chunk, V)` block exists.

Cost: one extra `N×H×V` matmul (the recomputation) on top of the usual three.
"""

import torch

# Bytes of one (rows, V) float32 logits block; sized so that V = 128k still gets 128 rows,
# enough for an efficient matmul, while staying small next to the model itself.
CHUNK_BYTES = 64 * 2**20


def chunk_rows(vocab_size: int, chunk_bytes: int = CHUNK_BYTES) -> int:
    """Rows per chunk so that a float32 `(rows, vocab_size)` block fits `chunk_bytes`."""
    return max(16, chunk_bytes // (4 * vocab_size))


def _logits(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """`(rows, H) @ (V, H)ᵀ (+ bias)` → `(rows, V)` in the inputs' dtype."""
    if bias is None:
        return hidden @ weight.t()
    return torch.addmm(bias, hidden, weight.t())


def _cast(tensor: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    return None if tensor is None else tensor.to(dtype)


class _ChunkedTokenLogps(torch.autograd.Function):
    """autograd wrapper of the chunked head; use `chunked_token_logps`.

    Matmuls run in `dtype` (bfloat16 under autocast, else the weight's dtype) with autocast
    off, so forward and backward use the same precision; softmax math is float32.
    """

    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, rows, dtype):
        h, w, b = hidden.to(dtype), weight.to(dtype), _cast(bias, dtype)
        out = torch.empty(hidden.shape[0], dtype=torch.float32, device=hidden.device)
        lse = torch.empty_like(out)
        with torch.autocast(hidden.device.type, enabled=False):
            for start in range(0, hidden.shape[0], rows):
                end = start + rows
                logits = _logits(h[start:end], w, b).float()
                lse[start:end] = torch.logsumexp(logits, dim=-1)
                out[start:end] = logits.gather(1, targets[start:end, None]).squeeze(1) - lse[start:end]
                del logits  # free the block before the next one is allocated
        ctx.save_for_backward(hidden, weight, bias, targets, lse)
        ctx.rows, ctx.dtype = rows, dtype
        return out

    @staticmethod
    def backward(ctx, grad_out):
        hidden, weight, bias, targets, lse = ctx.saved_tensors
        need_hidden, need_weight, need_bias = ctx.needs_input_grad[:3]
        h, w, b = hidden.to(ctx.dtype), weight.to(ctx.dtype), _cast(bias, ctx.dtype)
        grad_hidden = torch.empty_like(h) if need_hidden else None
        # Sum the head's gradient over chunks in float32 even when the matmuls are bf16.
        grad_weight = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if need_weight else None
        grad_bias = torch.zeros(weight.shape[0], dtype=torch.float32, device=weight.device) if need_bias else None
        with torch.autocast(hidden.device.type, enabled=False):
            for start in range(0, hidden.shape[0], ctx.rows):
                end = start + ctx.rows
                g = grad_out[start:end, None].float()
                # d logp / d logits = onehot(y) − softmax: build −g·softmax in place, then add g at y.
                grad_logits = _logits(h[start:end], w, b).float().sub_(lse[start:end, None]).exp_().mul_(-g)
                grad_logits.scatter_add_(1, targets[start:end, None], g)
                if need_bias:
                    grad_bias += grad_logits.sum(0)
                grad_logits = grad_logits.to(ctx.dtype)  # no copy in float32
                if need_hidden:
                    torch.mm(grad_logits, w, out=grad_hidden[start:end])
                if need_weight and ctx.dtype == torch.float32:
                    grad_weight.addmm_(grad_logits.t(), h[start:end])
                elif need_weight:
                    grad_weight += (grad_logits.t() @ h[start:end]).float()
                del grad_logits
        return (
            _cast(grad_hidden, hidden.dtype),
            _cast(grad_weight, weight.dtype),
            _cast(grad_bias, bias.dtype if bias is not None else torch.float32),
            None,
            None,
            None,
        )


def chunked_token_logps(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    bias: torch.Tensor | None = None,
    rows: int | None = None,
) -> torch.Tensor:
    """Log-probability of each target token under `softmax(hidden @ weightᵀ + bias)`.

    Equal to `log_softmax(hidden @ weight.T + bias).gather(-1, targets)` in value and
    gradient, without ever holding more than one `(rows, V)` block of logits.

    Args:
        hidden: `(N, H)` hidden states at the positions whose next token is scored.
        weight: `(V, H)` output head weight (`lm_head.weight`).
        targets: `(N,)` token ids in `[0, V)`.
        bias: `(V,)` output head bias, if the head has one.
        rows: rows per chunk; default `chunk_rows(V)`.

    Returns:
        `(N,)` float32 log-probabilities, differentiable with respect to `hidden`,
        `weight` and `bias`.

    Raises:
        ValueError: the shapes disagree.
    """
    if hidden.dim() != 2 or weight.dim() != 2 or hidden.shape[1] != weight.shape[1] or targets.shape != hidden.shape[:1]:
        raise ValueError(
            f"need hidden (N, H), weight (V, H) and targets (N,); got hidden {tuple(hidden.shape)}, "
            f"weight {tuple(weight.shape)}, targets {tuple(targets.shape)}"
        )
    rows = rows or chunk_rows(weight.shape[0])
    device = hidden.device.type
    dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else weight.dtype
    return _ChunkedTokenLogps.apply(hidden, weight, bias, targets, rows, dtype)
