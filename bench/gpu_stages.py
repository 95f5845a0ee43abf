"""gpu-check stages: the environment, bf16-mixed training (full and LoRA), and the evaluation
of base and trained model with a judge.

The ddp/fsdp engines under torchrun are in `gpu_engines.py`, the packed-attention stage in
`gpu_packing.py`, the 1B-shape benchmark in `gpu_bench.py`.
"""

import importlib
import importlib.metadata
import importlib.util
import platform
import time
from pathlib import Path
from typing import Any

from gpu_common import Checks, Context, learned, peak_memory_gb, reset_peak_memory, start_model

ROOT = Path(__file__).resolve().parent.parent

# What simpo_core's packed attention takes from transformers (`simpo_core.train.packing`).
TRANSFORMERS_INTERNALS = (
    ("transformers.integrations.sdpa_attention", "sdpa_attention_forward"),
    ("transformers.masking_utils", "sdpa_mask"),
    ("transformers", "AttentionInterface"),
    ("transformers.masking_utils", "AttentionMaskInterface"),
)
# The stages fail without these: simpo_core needs numpy and pydantic, LoRA peft, the engines'
# job file yaml and their worker pandas (it reads the pairs file with it).
NEEDED = ("numpy", "pydantic", "yaml", "safetensors", "peft", "accelerate", "pandas")
OPTIONAL = ("triton", "datasets", "trl", "liger_kernel", "mlflow", "prefect")  # skipped or not used without


def _version(module: str) -> str | None:
    """The installed version of `module`, "present" when it has none, None when it is absent."""
    if importlib.util.find_spec(module) is None:
        return None
    distribution = {"yaml": "pyyaml", "liger_kernel": "liger-kernel"}.get(module, module)
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return getattr(importlib.import_module(module), "__version__", "present")


def _flex_attention_available() -> bool:
    """FlexAttention with grouped-query heads (torch >= 2.5), as packed attention needs it."""
    import inspect

    try:
        from torch.nn.attention.flex_attention import create_block_mask, flex_attention  # noqa: F401
    except ImportError:
        return False
    return "enable_gqa" in inspect.signature(flex_attention).parameters


def stage_environment(ctx: Context, figures: dict, checks: Checks) -> None:
    """Versions, the GPU, the modules each stage needs, and what packing takes from transformers."""
    import torch
    import transformers

    figures.update(python=platform.python_version(), torch=torch.__version__, transformers=transformers.__version__)
    figures.update(device=ctx.device, precision=ctx.precision, mode=ctx.mode, work=str(ctx.work))
    if ctx.cuda:
        figures.update(gpu=torch.cuda.get_device_name(), cuda=torch.version.cuda)
        figures.update(capability=".".join(map(str, torch.cuda.get_device_capability())))
        figures.update(bf16=torch.cuda.is_bf16_supported(), gpu_memory_gb=torch.cuda.mem_get_info()[1] / 2**30)
        checks.require(figures["bf16"], "this GPU has no bfloat16: the bf16-mixed stages cannot run")
    figures["modules"] = {name: _version(name) for name in NEEDED + OPTIONAL}
    missing = [name for name in NEEDED if figures["modules"][name] is None]
    checks.require(not missing, f"missing modules the stages need: {missing}")
    internals = {}
    for module, name in TRANSFORMERS_INTERNALS:
        try:
            internals[f"{module}.{name}"] = hasattr(importlib.import_module(module), name)
        except ImportError:
            internals[f"{module}.{name}"] = False
    figures["transformers_internals"] = internals
    absent = [name for name, present in internals.items() if not present]
    checks.require(not absent, f"transformers {transformers.__version__} lacks what packed attention uses: {absent}")
    figures["flex_attention"] = _flex_attention_available()
    if ctx.cuda:
        checks.require(figures["flex_attention"], "torch has no FlexAttention with enable_gqa (torch >= 2.5)")
        checks.require(figures["modules"]["triton"] is not None, "triton is missing: torch.compile cannot run")


def _training_config(ctx: Context, lora: bool, steps: int, out: Path) -> Any:
    from simpo_core.train.config import LoraSettings, SimPOConfig

    # tiny-scratch: SimPO plus an SFT term, the preset for a model starting from random weights
    # (SimPO alone moves a model that knows no language too slowly for a short check).
    return SimPOConfig.preset(
        "tiny-scratch",
        lr=ctx.sizes.train_lr[1] if lora else ctx.sizes.train_lr[0],
        max_steps=steps,
        logging_steps=1,
        eval_steps=0,
        save_steps=0,
        output_dir=out,
        precision=ctx.precision,
        lora=LoraSettings(r=16, alpha=32) if lora else None,
        **ctx.sizes.train,
    )


def stage_training(ctx: Context, figures: dict, checks: Checks, lora: bool) -> None:
    """Train the ~100M Llama on synthetic pairs: the loss falls and stays finite, batches are
    packed and (on CUDA) every packed call of forward and backward ran compiled FlexAttention."""
    import torch
    from transformers import AutoModelForCausalLM

    from simpo_core.data.synthetic import generate_pairs
    from simpo_core.tiny_model import build_tiny_tokenizer
    from simpo_core.train.logps import collate_for
    from simpo_core.train.packing import last_packed_attention_path, packed_attention_fallbacks
    from simpo_core.train.trainer import SimPOTrainer

    steps = ctx.sizes.lora_steps if lora else ctx.sizes.train_steps
    out = ctx.work / ("train_lora" if lora else "train_full")
    model = AutoModelForCausalLM.from_pretrained(start_model(ctx), dtype=torch.float32)
    tokenizer = build_tiny_tokenizer()
    config = _training_config(ctx, lora, steps, out)
    pairs = generate_pairs(max(steps * config.batch_size, 64), seed=1)
    trainer = SimPOTrainer(model, config, tokenizer=tokenizer, train_dataset=pairs, device=ctx.device)
    figures.update(precision=trainer.precision, steps=steps, batch_size=config.batch_size)
    figures["params"] = sum(p.numel() for p in trainer.model.parameters())
    figures["trainable"] = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    figures["packed"] = "cu_seq_lens" in collate_for(trainer.model, trainer.train_pairs[:2], tokenizer.pad_token_id)
    fallbacks, _ = packed_attention_fallbacks(), reset_peak_memory(ctx)
    start = time.perf_counter()
    history = trainer.train()
    figures.update(seconds_training=time.perf_counter() - start, peak_gpu_gb=peak_memory_gb(ctx))
    figures.update(
        attention_path=last_packed_attention_path(), attention_fallbacks=packed_attention_fallbacks() - fallbacks
    )
    losses = [entry["loss"] for entry in history if "loss" in entry]
    checks.require(len(losses) == steps, f"{len(losses)} losses logged for {steps} steps")
    learned(figures, checks, losses, "training")
    checks.require(figures["packed"], "training batches were padded: packing is off for this model")
    if ctx.cuda and figures["packed"]:
        path = figures["attention_path"]
        checks.require(path == "FlexAttention (compiled, cuda)", f"packed attention ran through {path!r}")
        checks.require(figures["attention_fallbacks"] == 0, "FlexAttention failed and fell back to the loop")
    figures["dir"] = trainer.save_model(str(out / "final"))


def stage_train_full(ctx: Context, figures: dict, checks: Checks) -> None:
    """bf16-mixed full fine-tune of the ~100M Llama."""
    stage_training(ctx, figures, checks, lora=False)


def stage_train_lora(ctx: Context, figures: dict, checks: Checks) -> None:
    """bf16-mixed LoRA of the ~100M Llama."""
    stage_training(ctx, figures, checks, lora=True)


def reward_model(ctx: Context) -> Path:
    """A small sequence-classification reward model (random weights, the byte tokenizer): the
    `reward-model` judge runs it on the evaluation's device."""
    import torch
    from transformers import LlamaConfig, LlamaForSequenceClassification

    from simpo_core.tiny_model import TINY_ARCHITECTURE, build_tiny_tokenizer

    folder = ctx.work / "reward-model"
    tokenizer = build_tiny_tokenizer()
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), num_labels=1, pad_token_id=0, **TINY_ARCHITECTURE)
    LlamaForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def stage_evaluation(ctx: Context, figures: dict, checks: Checks) -> None:
    """`evaluate_saved` on the device with the base model and the reward-model judge (the
    call `simpo evaluate --base ...` makes): both models scored, both generate, answers judged."""
    from simpo_core.data.synthetic import generate_pairs
    from simpo_core.eval.saved import evaluate_saved
    from simpo_core.eval.settings import EvalSettings

    base, trained = start_model(ctx), ctx.work / "train_full" / "final"
    figures["trained"] = "train_full" if trained.exists() else "start model (train_full left no model)"
    trained = trained if trained.exists() else base
    settings = EvalSettings(
        device=ctx.device, judge="reward-model", reward_model_path=str(reward_model(ctx)), max_new_tokens=32,
        generation_samples=ctx.sizes.generation_samples, max_length=256, max_prompt_length=128,
    )  # fmt: skip
    baseline = reset_peak_memory(ctx)
    start = time.perf_counter()
    pairs = generate_pairs(ctx.sizes.eval_pairs, seed=9)
    heldout = evaluate_saved(str(trained), pairs, settings, base_source=str(base)).heldout
    figures["seconds_evaluation"] = time.perf_counter() - start
    for name in ("base", "trained"):
        block = heldout[name] or {}
        figures[f"{name}_reward_accuracy"] = block.get("reward_accuracy")
        figures[f"{name}_generated"] = (block.get("generation") or {}).get("samples")
        checks.require(block.get("pairs") == len(pairs), f"the {name} model was not scored on every pair")
        checks.require(bool(figures[f"{name}_generated"]), f"the {name} model generated nothing")
    judge = heldout["judge"] or {}
    figures.update(judge=judge.get("name"), judged=judge.get("judged"), win_rate=judge.get("win_rate"))
    checks.require(bool(judge.get("judged")), f"the judge scored no answers: {judge.get('note', 'no judge block')}")
    if trained != base:
        same = heldout["base"]["logps_chosen"] == heldout["trained"]["logps_chosen"]
        checks.require(not same, "base and trained scored the same: one model was evaluated twice")
    if ctx.cuda:
        grown = (peak_memory_gb(ctx) or 0) * 2**30 - baseline
        figures["peak_gpu_gb"] = peak_memory_gb(ctx)
        model_bytes = (base / "model.safetensors").stat().st_size
        checks.require(grown >= model_bytes, "the models did not run on the GPU (no model's worth of GPU memory)")
