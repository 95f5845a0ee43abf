import socket

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from simpo_core.models import load_model_and_tokenizer, resolve_model_source
from simpo_core.tiny_model import TINY_CHAT_TEMPLATE, build_tiny_model, build_tiny_tokenizer


@pytest.fixture
def no_network(monkeypatch):
    """Fail the test if anything tries to open a network connection."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_tokenizer_has_eos_pad_and_chat_template():
    tokenizer = build_tiny_tokenizer()
    assert tokenizer.eos_token_id is not None and tokenizer.pad_token_id is not None
    assert tokenizer.eos_token_id != tokenizer.pad_token_id
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True
    )
    assert text == "<|user|>\nhi\n<|assistant|>\n"


def test_same_seed_same_weights():
    a, b = build_tiny_model(384, seed=5), build_tiny_model(384, seed=5)
    c = build_tiny_model(384, seed=6)
    assert torch.equal(a.model.embed_tokens.weight, b.model.embed_tokens.weight)
    assert not torch.equal(a.model.embed_tokens.weight, c.model.embed_tokens.weight)


def test_round_trip_and_generate_offline(tiny_model_dir, no_network):
    files = {path.name for path in tiny_model_dir.iterdir()}
    assert "model.safetensors" in files
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, use_safetensors=True)
    assert len(tokenizer) == model.config.vocab_size
    assert tokenizer.chat_template == TINY_CHAT_TEMPLATE
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "List some fruit words."}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    output = model.generate(**prompt, max_new_tokens=8, do_sample=False)
    assert output.shape[1] > prompt["input_ids"].shape[1]


def test_load_model_and_tokenizer_from_saved_folder(tiny_model_dir, no_network):
    model, tokenizer = load_model_and_tokenizer(str(tiny_model_dir))
    assert model.config.vocab_size == len(tokenizer)
    assert not any(p.isnan().any() for p in model.parameters())


def test_tiny_resolves_to_the_sft_build_that_training_registers(tmp_path, monkeypatch):
    """`tiny` is the SFT build beside the from-scratch one in the cache (no training here: the
    build is replaced by a recorder)."""
    from simpo_core.train import tiny_sft

    calls = []
    monkeypatch.setattr(tiny_sft, "save_tiny_sft", lambda target, scratch: calls.append((target, scratch)) or target)
    assert resolve_model_source("tiny", cache_dir=tmp_path) == str(tmp_path / "tiny-sft")
    assert calls == [(tmp_path / "tiny-sft", tmp_path / "tiny")]


def test_missing_model_path_is_a_clear_error(tmp_path):
    from simpo_core.errors import ConfigError

    with pytest.raises(ConfigError, match="does not exist"):
        resolve_model_source(str(tmp_path / "nope"))


def test_uncached_hub_id_offline_is_a_clear_error(no_network):
    from simpo_core.errors import ConfigError

    with pytest.raises(ConfigError, match="HF_HUB_OFFLINE"):
        load_model_and_tokenizer("some-org/not-cached-model")


def test_concurrent_builds_share_one_complete_folder(tmp_path):
    """Two processes building `tiny` at once both end with the same complete folder."""
    import subprocess
    import sys

    target = tmp_path / "tiny"
    code = f"from simpo_core.tiny_model import save_tiny; save_tiny({str(target)!r})"
    processes = [subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for process in processes:
        assert process.wait(timeout=120) == 0, process.stderr.read()
    assert (target / "model.safetensors").exists() and (target / "tiny_seed.txt").read_text() == "1234"
    assert [path.name for path in tmp_path.iterdir()] == ["tiny"]
