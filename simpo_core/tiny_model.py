"""The embedded `tiny-scratch` model: a seeded small Llama with an offline byte tokenizer.

Nothing is downloaded: ByT5's byte-level tokenizer needs no vocabulary file and gets a chat
template; the model is built from a config with a fixed seed. It is saved with
`save_pretrained` into a cache folder (`.simpo/models/tiny`), written privately and renamed,
so every later step loads it like any hub model and concurrent builders never share a
half-written folder. `models.resolve_model_source` maps the source `tiny-scratch` here; the
default `tiny` is this model after SFT, which training builds (`simpo_core.train.tiny_sft`).
"""

import logging
from pathlib import Path

logger = logging.getLogger(__name__)

TINY_SEED = 1234


# A role-tagged template: simple enough for a byte-level model to learn, and it renders
# system, user and assistant turns so multi-turn prompts keep their structure.
TINY_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|{{ message['role'] }}|>\n{{ message['content'] }}\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)

# Small enough to train a few hundred steps on two CPU cores in about a minute.
TINY_ARCHITECTURE = {
    "hidden_size": 128,
    "intermediate_size": 384,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
    "max_position_embeddings": 1024,
    "tie_word_embeddings": False,
}


def build_tiny_tokenizer():
    """A byte-level tokenizer with eos, pad and a chat template; no files needed."""
    from transformers import ByT5Tokenizer

    tokenizer = ByT5Tokenizer()
    tokenizer.chat_template = TINY_CHAT_TEMPLATE
    tokenizer.model_max_length = TINY_ARCHITECTURE["max_position_embeddings"]
    return tokenizer


def build_tiny_model(vocab_size: int, seed: int = TINY_SEED, eos_token_id: int = 1, pad_token_id: int = 0):
    """A freshly initialised small Llama, identical for the same seed.

    Args:
        vocab_size: size of the tokenizer (`len(tokenizer)`, not `vocab_size`, which
            leaves out the special tokens).
        seed: initialisation seed.
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=vocab_size,
        bos_token_id=None,
        eos_token_id=eos_token_id,
        pad_token_id=pad_token_id,
        **TINY_ARCHITECTURE,
    )
    from simpo_core.building import one_build_at_a_time

    with one_build_at_a_time():
        generator_state = torch.random.get_rng_state()
        torch.manual_seed(seed)
        try:
            model = LlamaForCausalLM(config)
        finally:
            torch.random.set_rng_state(generator_state)
    model.generation_config.pad_token_id = pad_token_id
    model.generation_config.eos_token_id = eos_token_id
    return model


def save_tiny(target: Path, seed: int = TINY_SEED) -> Path:
    """Build the tiny tokenizer and model and save both (safetensors) into `target`.

    Reuses a complete earlier save of the same seed. Writes into a private temporary
    folder and renames it, so an interrupted build never leaves a half-saved model and two
    processes building at once never share files (the first rename wins).
    """
    import shutil
    import tempfile

    target = Path(target)
    if _is_complete(target, seed):
        return target
    tokenizer = build_tiny_tokenizer()
    model = build_tiny_model(len(tokenizer), seed, tokenizer.eos_token_id, tokenizer.pad_token_id)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
    try:
        tokenizer.save_pretrained(partial)
        model.save_pretrained(partial)
        (partial / "tiny_seed.txt").write_text(str(seed))
        if target.exists() and not _is_complete(target, seed):
            shutil.rmtree(target, ignore_errors=True)  # a stale save of another seed
        try:
            partial.rename(target)
        except OSError:
            if not _is_complete(target, seed):  # someone else's rename won: theirs is as good as ours
                raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    logger.info("built the tiny model (seed %d, %d parameters) in %s", seed, model.num_parameters(), target)
    return target


def _is_complete(folder: Path, seed: int) -> bool:
    marker = folder / "tiny_seed.txt"
    return marker.exists() and marker.read_text().strip() == str(seed)
