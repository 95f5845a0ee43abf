"""Packed attention's document-causal mask against one built by hand."""

import pytest
import torch

from simpo_core.train.packed_flex import document_causal_mask
from simpo_core.train.packing import set_packed_attention_backend


def test_document_causal_mask_equals_hand_built_mask():
    """Boundaries [0, 3, 7, 8]: sequences 0-2, 3-6 and 7; each a lower triangle on the diagonal."""
    mask_mod = document_causal_mask(torch.tensor([0, 3, 7, 8], dtype=torch.int32), 8)
    q, kv = torch.arange(8)[:, None], torch.arange(8)[None, :]
    expected = torch.tensor(
        [
            [1, 0, 0, 0, 0, 0, 0, 0],
            [1, 1, 0, 0, 0, 0, 0, 0],
            [1, 1, 1, 0, 0, 0, 0, 0],
            [0, 0, 0, 1, 0, 0, 0, 0],
            [0, 0, 0, 1, 1, 0, 0, 0],
            [0, 0, 0, 1, 1, 1, 0, 0],
            [0, 0, 0, 1, 1, 1, 1, 0],
            [0, 0, 0, 0, 0, 0, 0, 1],
        ],
        dtype=torch.bool,
    )
    assert torch.equal(mask_mod(0, 0, q, kv), expected)


def test_unknown_backend_is_rejected():
    with pytest.raises(ValueError, match="'fast'"):
        set_packed_attention_backend("fast")


def test_a_failing_flex_call_falls_back_to_the_loop(monkeypatch):
    """Under "auto", a FlexAttention failure (a compiler error, say) is logged and counted, and
    the exact per-sequence loop computes that call instead."""
    from simpo_core.train import packing

    def broken(*args):
        raise RuntimeError("kernel failed")

    before = packing.packed_attention_fallbacks()
    monkeypatch.setattr(packing, "_use_flex", lambda query, dropout: True)  # as "auto" decides on CUDA
    monkeypatch.setattr(packing, "flex_packed", broken)
    module = torch.nn.Module()
    query = torch.arange(24.0).reshape(1, 1, 3, 8) / 24
    bounds = torch.tensor([0, 1, 3], dtype=torch.int32)
    output, _ = packing.packed_sdpa_attention(module, query, query, query, None, cu_seq_lens_q=bounds)
    assert packing.packed_attention_fallbacks() == before + 1
    assert packing.last_packed_attention_path() == "loop (FlexAttention failed)"
    # Token 0 and token 1 each start a sequence, so they see only themselves: output = value.
    torch.testing.assert_close(output[0, :2, 0], query[0, 0, :2])
