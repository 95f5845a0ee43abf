"""What every gpu-check stage shares: the run's context, its sizes per mode, the assertions.

A stage is a function `(ctx, figures, checks) -> None`. It writes its numbers into `figures`
as soon as it has them, so a stage that fails half-way still reports what it measured; a
failed assertion (`checks.require`) is recorded with its reason and the stage carries on;
`StageSkip` records a stage that cannot run here (an optional peer missing, CUDA needed).
"""

import json
import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class StageSkip(Exception):
    """The stage cannot run on this machine; the message says why."""


class Checks:
    """The assertions of one stage: each failed one is kept with its reason."""

    def __init__(self) -> None:
        self.failures: list[str] = []

    def require(self, condition: bool, reason: str) -> bool:
        """Record `reason` as a failure unless `condition` holds; returns `condition`."""
        if not condition:
            self.failures.append(reason)
        return bool(condition)


@dataclass(frozen=True)
class Sizes:
    """The shapes and step counts of one mode (quick, full or dry-run)."""

    model: dict[str, int]  # overrides of `small_llama`'s ~100M shape
    train: dict[str, int]  # SimPOConfig overrides of the training stages (batch, lengths)
    train_lr: tuple[float, float]  # full fine-tune, LoRA
    train_steps: int
    lora_steps: int
    engine_steps: int
    eval_pairs: int
    generation_samples: int
    pack_pairs: int
    pack_lengths: tuple[int, int]  # tokens of prompt + chosen response, per pair
    pack_vocab: int
    bench_model: dict[str, int]  # overrides giving the benchmark's (Llama-3.2-1B) shape
    bench_vocab: int
    bench_lengths: tuple[int, int]
    bench_steps: int
    bench_batch: int
    stage_timeout_s: int  # in-process stages
    command_timeout_s: int  # each subprocess of the engines stage


LLAMA_1B = dict(
    hidden_size=2048, num_hidden_layers=16, num_attention_heads=32, num_key_value_heads=8, intermediate_size=8192
)
TINY = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, intermediate_size=128)

# quick: meant to end within 5 minutes on one H100/H200, compilation included (most of it: each
# new attention shape compiles FlexAttention's forward and backward once); full: longer shapes.
MODES: dict[str, Sizes] = {
    "quick": Sizes(
        model={}, train={}, train_lr=(3e-4, 1e-3), train_steps=100, lora_steps=50, engine_steps=10,
        eval_pairs=100, generation_samples=8, pack_pairs=8, pack_lengths=(512, 1024), pack_vocab=32000,
        bench_model=LLAMA_1B, bench_vocab=128256, bench_lengths=(512, 1024), bench_steps=10, bench_batch=4,
        stage_timeout_s=600, command_timeout_s=300,
    ),
    "full": Sizes(
        model={}, train={}, train_lr=(3e-4, 1e-3), train_steps=300, lora_steps=300, engine_steps=100,
        eval_pairs=500, generation_samples=64, pack_pairs=16, pack_lengths=(1024, 2048), pack_vocab=32000,
        bench_model=LLAMA_1B, bench_vocab=128256, bench_lengths=(512, 1024), bench_steps=30, bench_batch=4,
        stage_timeout_s=1800, command_timeout_s=900,
    ),
    "dry-run": Sizes(
        model=TINY, train=dict(batch_size=4, max_length=96, max_prompt_length=48), train_lr=(1e-3, 3e-3),
        train_steps=16, lora_steps=16, engine_steps=4, eval_pairs=8, generation_samples=2, pack_pairs=3,
        pack_lengths=(48, 96), pack_vocab=512, bench_model=TINY, bench_vocab=1000, bench_lengths=(48, 96),
        bench_steps=2, bench_batch=2, stage_timeout_s=300, command_timeout_s=240,
    ),
}  # fmt: skip


@dataclass
class Context:
    """One run: where it computes, in which precision, at which sizes, in which folder."""

    mode: str
    device: str  # "cuda", or "cpu" for the dry run
    precision: str  # "bf16-mixed" on CUDA, "fp32" on CPU (bfloat16 autocast needs CUDA here)
    sizes: Sizes
    work: Path
    skip_trl: bool = False
    cache: dict[str, Any] = field(default_factory=dict)  # built once per run: the 1B model, matmul FLOP/s

    @property
    def cuda(self) -> bool:
        return self.device == "cuda"


def small_llama(vocab_size: int, seed: int = 0, **overrides: Any) -> Any:
    """A Llama built from config; the defaults give ~100M parameters at a byte vocabulary."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    shape = dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, num_key_value_heads=12)
    shape.update(intermediate_size=2048, max_position_embeddings=2048, tie_word_embeddings=True)
    shape.update(overrides)
    config = LlamaConfig(vocab_size=vocab_size, pad_token_id=0, bos_token_id=None, eos_token_id=1, **shape)
    config._attn_implementation = "sdpa"
    return LlamaForCausalLM(config)


def start_model(ctx: Context) -> Path:
    """The folder of the ~100M starting model (byte tokenizer), written on first use: the training
    stages, the engines and the evaluation's base all start from these same weights."""
    from simpo_core.tiny_model import build_tiny_tokenizer

    folder = ctx.work / "start"
    if not (folder / "model.safetensors").exists():
        tokenizer = build_tiny_tokenizer()
        partial = ctx.work / "start.partial"
        small_llama(len(tokenizer), **ctx.sizes.model).save_pretrained(partial)
        tokenizer.save_pretrained(partial)
        partial.rename(folder)  # a stage killed mid-write leaves no half folder under the final name
    return folder


def varied_pairs(n: int, vocab_size: int, lengths: tuple[int, int], seed: int = 0) -> list[dict[str, str]]:
    """Word pairs of `lengths` tokens (prompt + chosen) each: the prompt a quarter to three
    quarters of the shortest, the rejected response at most as long as the chosen one."""
    from trainer_workload import SPECIAL_TOKENS

    rng, first, (low, high) = random.Random(seed), len(SPECIAL_TOKENS), lengths

    def words(k: int) -> str:
        return " ".join(f"w{rng.randrange(first, vocab_size)}" for _ in range(k))

    pairs = []
    for _ in range(n):
        prompt = rng.randint(low // 4, 3 * low // 4)
        budget = rng.randint(low, high) - prompt
        pairs.append(
            {"prompt": words(prompt), "chosen": words(budget), "rejected": words(rng.randint(low // 8, budget))}
        )
    return pairs


def reset_peak_memory(ctx: Context) -> int:
    """Start a peak-memory measurement; returns the bytes allocated now (0 off CUDA)."""
    import torch

    if not ctx.cuda:
        return 0
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    return torch.cuda.memory_allocated()


def peak_memory_gb(ctx: Context) -> float | None:
    """GPU memory peak since `reset_peak_memory`, GiB (None off CUDA)."""
    import torch

    return torch.cuda.max_memory_allocated() / 2**30 if ctx.cuda else None


def synchronize(ctx: Context) -> None:
    import torch

    if ctx.cuda:
        torch.cuda.synchronize()


def finite(values: list[float]) -> bool:
    return all(math.isfinite(x) for x in values)


def learned(figures: dict, checks: Checks, losses: list[float], name: str) -> None:
    """The loss fell: the mean of the last tenth of the logged step losses is below the first
    tenth's (single steps are too noisy to compare), and every loss is finite."""
    if not checks.require(bool(losses), f"{name} logged no loss"):
        return
    tenth = max(len(losses) // 10, 1)
    first, last = sum(losses[:tenth]) / tenth, sum(losses[-tenth:]) / tenth
    figures.update(loss_first=first, loss_last=last)
    checks.require(finite(losses), f"{name}: a loss is not finite")
    checks.require(last < first, f"{name}: the loss did not fall ({first:.4f} -> {last:.4f}, tenths' means)")


def json_safe(value: Any) -> Any:
    """`value` with NaN and infinities as strings, so every line is strict JSON (jq reads it)."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def dumps(line: dict[str, Any]) -> str:
    return json.dumps(json_safe(line))
