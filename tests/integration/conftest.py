"""Fixtures of the integration tests that more than one file uses."""

from pathlib import Path

import pytest
import torch

from simpo_core.tiny_model import TINY_ARCHITECTURE, build_tiny_tokenizer


@pytest.fixture(scope="session")
def tied_model(tmp_path_factory) -> Path:
    """The tiny Llama with tied input and output embeddings, saved in bfloat16 like hub checkpoints."""
    from transformers import LlamaConfig, LlamaForCausalLM

    folder = tmp_path_factory.mktemp("tied") / "model"
    tokenizer = build_tiny_tokenizer()
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), eos_token_id=1, pad_token_id=0, bos_token_id=None)
    for key, value in {**TINY_ARCHITECTURE, "tie_word_embeddings": True}.items():
        setattr(config, key, value)
    LlamaForCausalLM(config).to(torch.bfloat16).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
