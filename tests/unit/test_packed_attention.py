"""Packed attention's document-causal mask against one built by hand."""

import pytest
import torch

from simpo_core.train.packing import document_causal_mask, set_packed_attention_backend

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
