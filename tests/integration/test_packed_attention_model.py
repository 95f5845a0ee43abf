"""Packed attention through FlexAttention against the per-sequence loop and the padded
forward. FlexAttention runs eagerly on CPU, forward only (torch has no CPU backward for
it), and its first call costs about a second of setup, hence integration."""

import functools

import pytest
import torch
from torch.testing import assert_close

from simpo_core.train import packing
from simpo_core.train.logps import sequence_logps
from simpo_core.train.packing import enable_packing, pack_pairs, packed_sdpa_attention, set_packed_attention_backend
from simpo_core.train.tokenization import EncodedPair, collate_pairs

pytestmark = pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")

PAIRS = [
    EncodedPair([1, 5, 6], [7, 8, 9, 2], [10, 2]),
    EncodedPair([1, 11], [12, 2], [13, 14, 15, 16, 2]),
    EncodedPair([1, 17, 18, 19], [20, 21, 22, 23, 24, 2], [25, 2]),
]


@pytest.fixture
def backend():
    """Sets the packed attention backend for one test, then restores it."""
    previous = set_packed_attention_backend("auto")
    yield set_packed_attention_backend
    set_packed_attention_backend(previous)


def test_flex_and_loop_agree_with_grouped_heads_and_scaling(backend):
    """4 query heads over 2 key/value heads, a non-default scale: the two paths and a
    per-sequence reference give the same `(1, L, heads, head_dim)` output."""
    module = torch.nn.Module()
    module.num_key_value_groups = 2
    generator = torch.Generator().manual_seed(0)
    query, key, value = (torch.randn(1, h, 8, 16, generator=generator) for h in (4, 2, 2))
    bounds = torch.tensor([0, 3, 7, 8], dtype=torch.int32)
    reference = torch.cat(
        [
            torch.nn.functional.scaled_dot_product_attention(
                query[:, :, s:e], key[:, :, s:e], value[:, :, s:e], is_causal=True, scale=0.3, enable_gqa=True
            )
            for s, e in ((0, 3), (3, 7), (7, 8))
        ],
        dim=2,
    ).transpose(1, 2)
    for name in ("loop", "flex"):
        backend(name)
        output, _ = packed_sdpa_attention(module, query, key, value, None, cu_seq_lens_q=bounds, scaling=0.3)
        assert output.shape == (1, 8, 4, 16)
        assert_close(output, reference, rtol=1e-5, atol=1e-5, msg=name)


def _tiny_model():
    from simpo_core.tiny_model import build_tiny_model

    return build_tiny_model(vocab_size=32)


@pytest.mark.parametrize("shape", ["tiny", "grouped-query"])
def test_flex_packed_forward_equals_padded_and_loop(backend, monkeypatch, grouped_query_llama, shape):
    """Per-sequence log-probs: padded forward, packed through the loop, packed through
    FlexAttention; the block mask is built once per forward, not once per layer."""
    model = (_tiny_model() if shape == "tiny" else grouped_query_llama()).eval()
    with torch.no_grad():
        padded = sequence_logps(model, collate_pairs(PAIRS, pad_token_id=0))[0]
        assert enable_packing(model)
        backend("loop")
        loop = sequence_logps(model, pack_pairs(PAIRS))[0]
        backend("flex")
        built = []
        create_block_mask = torch.nn.attention.flex_attention.create_block_mask
        monkeypatch.setattr(
            torch.nn.attention.flex_attention,
            "create_block_mask",
            lambda *args, **kwargs: built.append(args[3]) or create_block_mask(*args, **kwargs),
        )
        flex = sequence_logps(model, pack_pairs(PAIRS))[0]
    assert packing.last_packed_attention_path() == "FlexAttention (eager, cpu)"
    assert built == [39]  # one mask for both layers, over L = 7 + 4 + 10 + 5 + 7 + 6 tokens
    assert_close(loop, padded, rtol=1e-5, atol=1e-5)
    assert_close(flex, padded, rtol=1e-5, atol=1e-5)
    assert_close(flex, loop, rtol=1e-5, atol=1e-5)


def test_auto_runs_the_loop_on_cpu(backend, monkeypatch, grouped_query_llama):
    """The CPU default is the exact per-sequence loop, which trains: FlexAttention is never reached."""
    model = grouped_query_llama()
    assert enable_packing(model)
    monkeypatch.setattr(packing, "flex_packed", lambda *args: pytest.fail("flex path taken on CPU"))
    sums, lengths = sequence_logps(model, pack_pairs(PAIRS))
    sums.sum().backward()
    assert lengths.tolist() == [4, 2, 6, 2, 5, 2]
    assert packing.last_packed_attention_path() == "loop"
    assert model.model.layers[0].self_attn.q_proj.weight.grad.abs().sum() > 0


def test_flex_under_bf16_autocast_takes_one_dtype_and_matches_the_loop(backend, monkeypatch, grouped_query_llama):
    """Under bf16 autocast Llama's rotary path hands attention float32 queries/keys beside
    bfloat16 values (the compiled kernel on CUDA refuses that mix); FlexAttention gets one
    dtype (autocast's) and agrees with the loop."""
    from torch.nn.attention import flex_attention as flex_module

    seen, real = [], flex_module.flex_attention

    @functools.wraps(real)  # the same signature: the availability check reads it
    def recording(query, key, value, **kwargs):
        seen.append((query.dtype, key.dtype, value.dtype))
        return real(query, key, value, **kwargs)

    monkeypatch.setattr(flex_module, "flex_attention", recording)
    model = grouped_query_llama().eval()
    assert enable_packing(model)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        backend("loop")
        loop = sequence_logps(model, pack_pairs(PAIRS))[0]
        backend("flex")  # a failure is an error here, not a fallback
        flex = sequence_logps(model, pack_pairs(PAIRS))[0]
    assert packing.last_packed_attention_path() == "FlexAttention (eager, cpu)"
    assert set(seen) == {(torch.bfloat16,) * 3}  # one dtype in every layer
    assert_close(flex.float(), loop.float(), rtol=2e-2, atol=5e-2)  # bfloat16 keeps 8 significant bits


def test_a_flex_failure_falls_back_for_that_call_only_and_is_counted(backend, monkeypatch, grouped_query_llama):
    model = grouped_query_llama().eval()
    assert enable_packing(model)
    backend("auto")
    monkeypatch.setattr(packing, "_use_flex", lambda query, dropout: True)
    failures = iter([RuntimeError("kernel failed")])

    def flaky(*args):
        error = next(failures, None)
        if error is not None:
            raise error
        return real(*args)

    real = packing.flex_packed
    monkeypatch.setattr(packing, "flex_packed", flaky)
    before = packing.packed_attention_fallbacks()
    with torch.no_grad():
        sequence_logps(model, pack_pairs(PAIRS))  # the first layer's call fails, the next ones flex
    assert packing.packed_attention_fallbacks() == before + 1
