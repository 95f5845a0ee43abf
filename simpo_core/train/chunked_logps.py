"""Token log-probs through the output head in chunks, forward and backward.

`log π(y_t | ·) = h_t·w_{y_t} − logsumexp_v(h_t·w_v)` needs the whole row of logits, so
a plain `log_softmax(lm_head(h))` keeps `(N, V)` float32 logits alive for the backward:
with V = 128k that is 0.5 MB per token, gigabytes per batch. Here the forward keeps only
the hidden states and one number per token (the logsumexp); the backward recomputes each
chunk's logits, turns them into the gradient in place, and folds it into the gradients of
the hidden states and the head weight. At any time one `(chunk, V)` block exists.

Cost: one extra `N×H×V` matmul (the recomputation) on top of the usual three, except when
the whole `(N, V)` block is small (`KEEP_BYTES`): then it is kept, as log-probs, instead.
"""

import torch

# Bytes of one (rows, V) float32 logits block; sized so that V = 128k still gets 128 rows,
# enough for an efficient matmul, while staying small next to the model itself.
CHUNK_BYTES = 64 * 2**20

# When the response tokens' float32 log-probs fit this, the forward keeps them and the
# backward skips recomputing them (one N×H×V matmul fewer): V = 32k with a few pairs per
# micro-batch. Larger blocks (long batches, V = 128k) are recomputed chunk by chunk.
KEEP_BYTES = 160 * 2**20


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


class _Blocks:
    """`(rows, V)` float32 buffers reused by every chunk of one call: large blocks freed and
    allocated again are returned to and faulted in from the OS each time (page zeroing).

    On CPU the (log-)softmax is written over the logits (ATen's CPU kernels finish reading a
    row before writing it; a unit test checks the result), halving the memory; elsewhere it
    gets a second buffer.
    """

    def __init__(self, rows: int, vocab: int, device: torch.device) -> None:
        self.logits = torch.empty(rows, vocab, dtype=torch.float32, device=device)
        self.probs = self.logits if device.type == "cpu" else torch.empty_like(self.logits)

    def logits_of(self, h: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, offset: int = 0) -> torch.Tensor:
        """`(n, V)` float32 logits of the `(n, H)` rows `h`, written at row `offset`."""
        out = self.logits[offset : offset + h.shape[0]]
        if w.dtype != torch.float32:
            return out.copy_(_logits(h, w, b))
        if b is None:
            return torch.mm(h, w.t(), out=out)
        return torch.addmm(b, h, w.t(), out=out)

    def log_softmax(self, logits: torch.Tensor, offset: int = 0) -> torch.Tensor:
        return torch.ops.aten._log_softmax.out(logits, 1, False, out=self.probs[offset : offset + logits.shape[0]])

    def softmax(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.ops.aten._softmax.out(logits, 1, False, out=self.probs[: logits.shape[0]])


class _ChunkedTokenLogps(torch.autograd.Function):
    """autograd wrapper of the chunked head; use `chunked_token_logps`.

    Matmuls run in `dtype` (bfloat16 under autocast, else the weight's dtype) with autocast
    off, so forward and backward use the same precision; softmax math is float32. When all
    `(N, V)` log-probs fit `keep_bytes` (CPU only), the forward keeps them for the backward,
    which then skips the recomputation.
    """

    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, rows, dtype, keep_bytes):
        h, w, b = hidden.to(dtype), weight.to(dtype), _cast(bias, dtype)
        n, vocab = hidden.shape[0], weight.shape[0]
        keep = hidden.device.type == "cpu" and 4 * n * vocab <= keep_bytes
        out = torch.empty(n, dtype=torch.float32, device=hidden.device)
        blocks = _Blocks(max(n if keep else min(rows, n), 1), vocab, hidden.device)
        with torch.autocast(hidden.device.type, enabled=False):
            for start in range(0, n, rows):
                offset = start if keep else 0
                logps = blocks.log_softmax(blocks.logits_of(h[start : start + rows], w, b, offset), offset)
                out[start : start + rows] = logps.gather(1, targets[start : start + rows, None]).squeeze(1)
        ctx.save_for_backward(hidden, weight, bias, targets)
        ctx.rows, ctx.dtype = rows, dtype
        ctx.kept_logps = blocks.probs[:n] if keep else None
        return out

    @staticmethod
    def backward(ctx, grad_out):
        hidden, weight, bias, targets = ctx.saved_tensors
        need_hidden, need_weight, need_bias = ctx.needs_input_grad[:3]
        h, w, b = hidden.to(ctx.dtype), weight.to(ctx.dtype), _cast(bias, ctx.dtype)
        grad_hidden = torch.empty_like(h) if need_hidden else None
        # Sum the head's gradient over chunks in float32 even when the matmuls are bf16.
        grad_weight = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if need_weight else None
        grad_bias = torch.zeros(weight.shape[0], dtype=torch.float32, device=weight.device) if need_bias else None
        kept, ctx.kept_logps = ctx.kept_logps, None  # used once: a second backward recomputes
        probs = kept.exp_() if kept is not None else None
        blocks = (
            None
            if probs is not None
            else _Blocks(max(min(ctx.rows, hidden.shape[0]), 1), weight.shape[0], hidden.device)
        )
        with torch.autocast(hidden.device.type, enabled=False):
            for start in range(0, hidden.shape[0], ctx.rows):
                end = start + ctx.rows
                chunk_probs = (
                    probs[start:end] if probs is not None else blocks.softmax(blocks.logits_of(h[start:end], w, b))
                )
                _head_grads_of_chunk(
                    chunk_probs,
                    h[start:end],
                    w,
                    targets[start:end],
                    grad_out[start:end].float(),
                    grad_hidden[start:end] if need_hidden else None,
                    grad_weight,
                    grad_bias,
                )
        return (
            _cast(grad_hidden, hidden.dtype),
            _cast(grad_weight, weight.dtype),
            _cast(grad_bias, bias.dtype if bias is not None else torch.float32),
            None,
            None,
            None,
            None,
        )


def _head_grads_of_chunk(
    probs: torch.Tensor,
    h: torch.Tensor,
    w: torch.Tensor,
    targets: torch.Tensor,
    g: torch.Tensor,
    grad_hidden: torch.Tensor | None,
    grad_weight: torch.Tensor | None,
    grad_bias: torch.Tensor | None,
) -> None:
    """Gradients of `Σ_i g_i · logp_i` for one chunk of n rows, added into the outputs.

    With p_i = softmax(h_i Wᵀ + b) (`probs`, `(n, V)` float32) and d logp_i / d logits_i = e_{y_i} − p_i:
        dh_i = g_i · (W[y_i] − p_i W)        dW = Σ_i g_i (e_{y_i} − p_i) h_iᵀ        db = Σ_i g_i (e_{y_i} − p_i)
    The per-row factor g is applied to the small `(n, H)` side, never to the `(n, V)` block.
    """
    probs_mm = probs.to(w.dtype)  # no copy in float32
    g_col = g[:, None].to(w.dtype)
    if grad_hidden is not None:
        torch.mm(probs_mm, w, out=grad_hidden)
        grad_hidden.mul_(-g_col).add_(w[targets] * g_col)
    if grad_weight is not None:
        scaled = h * g_col
        if w.dtype == torch.float32:
            grad_weight.addmm_(probs_mm.t(), scaled, alpha=-1.0)
        else:
            grad_weight -= (probs_mm.t() @ scaled).float()
        grad_weight.index_add_(0, targets, scaled.float())
    if grad_bias is not None:
        grad_bias -= probs.t() @ g
        grad_bias.index_add_(0, targets, g)


def chunked_token_logps(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    bias: torch.Tensor | None = None,
    rows: int | None = None,
    keep_bytes: int = KEEP_BYTES,
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
        keep_bytes: keep the `(N, V)` float32 log-probs for the backward (CPU) when they fit
            this many bytes; 0 always recomputes.

    Returns:
        `(N,)` float32 log-probabilities, differentiable with respect to `hidden`,
        `weight` and `bias`.

    Raises:
        ValueError: the shapes disagree.
    """
    if (
        hidden.dim() != 2
        or weight.dim() != 2
        or hidden.shape[1] != weight.shape[1]
        or targets.shape != hidden.shape[:1]
    ):
        raise ValueError(
            f"need hidden (N, H), weight (V, H) and targets (N,); got hidden {tuple(hidden.shape)}, "
            f"weight {tuple(weight.shape)}, targets {tuple(targets.shape)}"
        )
    rows = rows or chunk_rows(weight.shape[0])
    device = hidden.device.type
    dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else weight.dtype
    needs_backward = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (hidden, weight, bias))
    return _ChunkedTokenLogps.apply(hidden, weight, bias, targets, rows, dtype, keep_bytes if needs_backward else 0)
