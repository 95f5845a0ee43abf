"""Chunked output-head log-probs against the full-logits reference: values and gradients."""

import pytest
import torch
from torch.testing import assert_close

from simpo_core.train.chunked_logps import chunk_rows, chunked_token_logps
from simpo_core.train.loss import IGNORE_INDEX, batch_logps
from simpo_core.train.packing import pack_pairs
from simpo_core.train.tokenization import EncodedPair


def _reference(hidden, weight, targets, bias=None):
    logits = hidden @ weight.t() + (0 if bias is None else bias)
    return logits.log_softmax(-1).gather(1, targets[:, None]).squeeze(1)


def _grads(fn, hidden, weight, bias, targets, upstream):
    leaves = [t.detach().clone().requires_grad_() for t in (hidden, weight) + ((bias,) if bias is not None else ())]
    out = fn(leaves[0], leaves[1], targets, leaves[2] if bias is not None else None)
    (out * upstream).sum().backward()
    return out.detach(), [leaf.grad for leaf in leaves]


@pytest.mark.parametrize("rows", [1, 7, 64, 1000])
@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize("keep_bytes", [0, 10**9])
def test_values_and_gradients_equal_full_logits(rows, with_bias, keep_bytes):
    """Every chunk size (one row, uneven last chunk, one chunk for all), recomputed in the
    backward or kept from the forward, gives the reference's log-probs and the gradients of
    Σ g·logp for hidden, weight and bias."""
    torch.manual_seed(0)
    hidden, weight, bias = torch.randn(50, 12), torch.randn(300, 12), torch.randn(300) if with_bias else None
    targets, upstream = torch.randint(0, 300, (50,)), torch.randn(50)
    ours, our_grads = _grads(
        lambda h, w, t, b: chunked_token_logps(h, w, t, bias=b, rows=rows, keep_bytes=keep_bytes),
        hidden,
        weight,
        bias,
        targets,
        upstream,
    )
    ref, ref_grads = _grads(_reference, hidden, weight, bias, targets, upstream)
    assert_close(ours, ref, rtol=1e-5, atol=1e-5)
    for mine, theirs in zip(our_grads, ref_grads):
        assert_close(mine, theirs, rtol=1e-5, atol=1e-5)


def test_float64_inputs_compute_in_float64():
    """A float64 head computes in float64 (output float32, as every log-prob here)."""
    torch.manual_seed(1)
    hidden = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(9, 4, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, 9, (6,))
    out = chunked_token_logps(hidden, weight, targets, rows=4)
    assert out.dtype == torch.float32
    assert_close(out.double(), _reference(hidden, weight, targets), rtol=1e-6, atol=1e-6)


def test_only_hidden_needs_grad_when_the_head_is_frozen():
    """LoRA leaves the head frozen: no weight gradient is computed, hidden's still is."""
    hidden = torch.randn(5, 3, requires_grad=True)
    weight = torch.randn(11, 3)
    chunked_token_logps(hidden, weight, torch.tensor([0, 1, 2, 3, 10]), rows=2).sum().backward()
    expected = torch.autograd.grad(_reference(hidden, weight, torch.tensor([0, 1, 2, 3, 10])).sum(), hidden)[0]
    assert_close(hidden.grad, expected)
    assert weight.grad is None


def test_bad_shapes_name_them():
    with pytest.raises(ValueError, match=r"hidden \(5, 3\).*weight \(11, 4\)"):
        chunked_token_logps(torch.randn(5, 3), torch.randn(11, 4), torch.zeros(5, dtype=torch.long))


def test_chunk_rows_bounds_the_block():
    """64 MiB of float32 logits: 524 rows at V = 32,000, 130 at 128,256; never below 16."""
    assert chunk_rows(32_000) == 524
    assert chunk_rows(128_256) == 130
    assert chunk_rows(10**9) == 16


def test_pack_pairs_row_by_row():
    """Two pairs, prompt [1, 5] / chosen [6, 2] / rejected [7, 8, 2]:
    chosen0 | chosen1 | rejected0 | rejected1 packed end to end, positions restarting."""
    pairs = [EncodedPair([1, 5], [6, 2], [7, 8, 2]), EncodedPair([1], [9, 2], [3, 2])]
    packed = pack_pairs(pairs)
    x = IGNORE_INDEX
    assert packed["input_ids"].tolist() == [[1, 5, 6, 2, 1, 9, 2, 1, 5, 7, 8, 2, 1, 3, 2]]
    assert packed["labels"].tolist() == [[x, x, 6, 2, x, 9, 2, x, x, 7, 8, 2, x, 3, 2]]
    assert packed["position_ids"].tolist() == [[0, 1, 2, 3, 0, 1, 2, 0, 1, 2, 3, 4, 0, 1, 2]]
    assert packed["cu_seq_lens"].tolist() == [0, 4, 7, 12, 15]


def test_batch_logps_reference_agrees_on_a_sequence():
    """The full-logits `batch_logps` and the chunked head score the same labelled tokens."""
    torch.manual_seed(2)
    hidden, weight = torch.randn(1, 6, 4), torch.randn(10, 4)
    labels = torch.tensor([[x for x in (IGNORE_INDEX, IGNORE_INDEX, 3, 4, 5, 6)]])
    full = batch_logps(hidden @ weight.t(), labels, average=False)
    chunked = chunked_token_logps(hidden[0, 1:5], weight, labels[0, 2:], rows=3).sum()
    assert_close(chunked, full[0])


def test_packed_and_padded_batches_equal_full_logits_in_values_and_gradients(grouped_query_llama):
    """A small Llama (grouped-query attention): the padded and the packed fast paths give the
    full-logits log-probs and the same parameter gradients."""
    from simpo_core.train.logps import sequence_logps
    from simpo_core.train.packing import enable_packing
    from simpo_core.train.tokenization import collate_pairs

    pairs = [EncodedPair([1, 5, 6], [7, 8, 9, 2], [10, 2]), EncodedPair([1, 11], [12, 2], [13, 14, 15, 16, 2])]
    padded = collate_pairs(pairs, pad_token_id=0)
    model = grouped_query_llama(vocab_size=40, hidden_size=16, seed=3)

    def run(fn):
        model.zero_grad(set_to_none=True)
        sums = fn()
        (sums * torch.tensor([0.3, -1.0, 0.7, 2.0])).sum().backward()
        return sums.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}

    full = run(
        lambda: batch_logps(
            model(input_ids=padded["input_ids"], attention_mask=padded["attention_mask"]).logits,
            padded["labels"],
            average=False,
        )
    )
    fast_padded = run(lambda: sequence_logps(model, padded)[0])
    assert enable_packing(model)
    fast_packed = run(lambda: sequence_logps(model, pack_pairs(pairs))[0])
    for sums, grads in (fast_padded, fast_packed):
        assert_close(sums, full[0], rtol=1e-5, atol=1e-5)
        for name, grad in grads.items():
            assert_close(grad, full[1][name], rtol=1e-4, atol=1e-5, msg=name)
    assert sequence_logps(model, pack_pairs(pairs))[1].tolist() == [4, 2, 2, 5]
