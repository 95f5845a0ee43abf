"""The benchmark's workload, built offline: a word-level tokenizer, a small Llama, random pairs.

Spec: LlamaConfig hidden 256, 4 layers, 4 heads, intermediate 704, untied head, vocabulary V
(32,000 or 128,256); a word-level tokenizer over the same V tokens; 64-word prompts and
responses of 32-224 words drawn at random; the same seeded weights and pairs for every trainer.
"""

import random
from typing import Any

PROMPT_WORDS = 64
RESPONSE_WORDS = (32, 224)
SPECIAL_TOKENS = ("<pad>", "<s>", "</s>", "<unk>")


def build_tokenizer(vocab_size: int) -> Any:
    """Word-level tokenizer: words `w4 … w{V-1}` plus pad, BOS, EOS, UNK; whitespace split.

    Its chat template writes the message contents only, so a prompt renders to its words.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS)}
    vocab.update({f"w{i}": i for i in range(len(SPECIAL_TOKENS), vocab_size)})
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token="<pad>", bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )
    tokenizer.chat_template = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    return tokenizer


def build_model(vocab_size: int, seed: int = 0) -> Any:
    """The benchmark Llama, float32, seeded."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=256,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=4,
        intermediate_size=704,
        max_position_embeddings=512,
        tie_word_embeddings=False,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    )
    config._attn_implementation = "sdpa"
    return LlamaForCausalLM(config).float()


# A ~300 M-parameter Llama (1.2 GB in float32): big enough that whole copies of it dominate a
# process's start-up memory, small enough for two CPU processes on a 24 GiB machine.
STARTUP_ARCHITECTURE = {
    "hidden_size": 1024,
    "intermediate_size": 2816,
    "num_hidden_layers": 18,
    "num_attention_heads": 16,
    "num_key_value_heads": 16,
}


def save_startup_checkpoint(folder: Any, vocab_size: int = 32000, dtype: str = "bfloat16") -> Any:
    """Save the start-up benchmark Llama (STARTUP_ARCHITECTURE, untied head, seeded) and its
    word-level tokenizer with `save_pretrained` (safetensors, in `dtype`, as hub checkpoints ship)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=vocab_size,
        max_position_embeddings=512,
        tie_word_embeddings=False,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        **STARTUP_ARCHITECTURE,
    )
    model = LlamaForCausalLM(config).to(getattr(torch, dtype))
    model.save_pretrained(folder)
    build_tokenizer(vocab_size).save_pretrained(folder)
    return folder


def build_pairs(n_pairs: int, vocab_size: int, seed: int = 0) -> list[dict[str, str]]:
    """Flat pairs of random words: prompt of PROMPT_WORDS, responses of RESPONSE_WORDS."""
    rng = random.Random(seed)
    first = len(SPECIAL_TOKENS)

    def words(n: int) -> str:
        return " ".join(f"w{rng.randrange(first, vocab_size)}" for _ in range(n))

    return [
        {
            "prompt": words(PROMPT_WORDS),
            "chosen": words(rng.randint(*RESPONSE_WORDS)),
            "rejected": words(rng.randint(*RESPONSE_WORDS)),
        }
        for _ in range(n_pairs)
    ]


def count_parameters(model: Any) -> dict[str, int]:
    """`total`, `embedding` (input embedding) and `flops_params` = total − input embedding
    (the blocks, norms and the output head: what the 6·N·tokens FLOPs rule counts)."""
    total = sum(p.numel() for p in model.parameters())
    embedding = model.get_input_embeddings().weight.numel()
    return {"total": total, "embedding": embedding, "flops_params": total - embedding}
