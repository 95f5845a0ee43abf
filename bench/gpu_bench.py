"""gpu-check benchmark stages on the Llama-3.2-1B shape (from config, random weights; bf16-mixed):
our trainer, TRL's `CPOTrainer(loss_type="simpo")` and the same with `use_liger_kernel=True`.

The model is built once per run; each trainer starts from its initial weights (a CPU copy,
restored in place) with the attention and checkpointing settings a fresh model has. Each
stage reports tokens/s, peak GPU memory and MFU: 6 × non-embedding parameters × tokens/s over
the measured bf16 matmul FLOP/s of this GPU. TRL and Liger are optional: absent, their stage
is skipped with the reason.
"""

import gc
import importlib
import importlib.util
import time
from typing import Any

from gpu_common import Checks, Context, StageSkip, finite, peak_memory_gb, reset_peak_memory, small_llama, synchronize

TRL_MODULE = "trl.experimental.cpo"  # where TRL 1.x keeps CPOTrainer and CPOConfig


def workload(ctx: Context) -> dict[str, Any]:
    """The model, its initial weights, tokenizer, pairs and MFU denominators, built on first use."""
    if "bench" in ctx.cache:
        return ctx.cache["bench"]
    import torch
    from bench_trainer import measure_matmul
    from gpu_common import varied_pairs
    from trainer_workload import build_tokenizer

    sizes, vocab = ctx.sizes, ctx.sizes.bench_vocab
    with torch.device(ctx.device):  # initialised where it trains: no host-side init of 1.2 B weights
        model = small_llama(vocab, **sizes.bench_model)
    hidden = model.config.hidden_size
    ctx.cache["bench"] = {
        "model": model,
        "initial": {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()},
        "tokenizer": build_tokenizer(vocab),
        "pairs": varied_pairs(sizes.bench_batch * (sizes.bench_steps + 2), vocab, sizes.bench_lengths, seed=1),
        "flops_per_token": 6 * (sum(p.numel() for p in model.parameters()) - hidden * vocab),
        "matmul_flops": measure_matmul(1, ctx.device, size=8192 if ctx.cuda else 512)["matmul_flops"],
    }
    return ctx.cache["bench"]


def _fresh(ctx: Context) -> Any:
    """The benchmark model as built: initial weights, plain SDPA, no checkpointing, no gradients."""
    import torch

    work = workload(ctx)
    model = work["model"]
    gc.collect()
    if ctx.cuda:
        torch.cuda.empty_cache()
    vars(model).pop("forward", None)  # accelerate wraps the instance's forward in autocast for TRL's run
    model.load_state_dict(work["initial"])
    model.config._attn_implementation = "sdpa"  # our trainer switches it to packed attention
    model.gradient_checkpointing_disable()  # a no-op unless a trainer switched it on
    model.zero_grad(set_to_none=True)
    return model.train()


def _report(ctx: Context, figures: dict, tokens_per_s: float) -> None:
    work = workload(ctx)
    figures.update(tokens_per_s=tokens_per_s, peak_gpu_gb=peak_memory_gb(ctx))
    figures.update(
        matmul_tflops=work["matmul_flops"] / 1e12, mfu=work["flops_per_token"] * tokens_per_s / work["matmul_flops"]
    )


def stage_bench_ours(ctx: Context, figures: dict, checks: Checks) -> None:
    """Our SimPOTrainer: one warm-up step (kernels, compilation, optimizer state), then timed steps."""
    from simpo_core.train.config import SimPOConfig
    from simpo_core.train.trainer import SimPOTrainer

    sizes, work = ctx.sizes, workload(ctx)
    longest, batch = sizes.bench_lengths[1], sizes.bench_batch
    config = SimPOConfig(
        lr=1e-6, batch_size=batch, max_length=longest, max_prompt_length=longest // 2, warmup_ratio=0.0,
        save_steps=0, lr_scheduler="constant", precision=ctx.precision, output_dir=ctx.work / "bench_ours",
        max_steps=sizes.bench_steps + 1,
    )  # fmt: skip
    model = _fresh(ctx)
    figures["params"] = sum(p.numel() for p in model.parameters())
    reset_peak_memory(ctx)
    trainer = SimPOTrainer(model, config, tokenizer=work["tokenizer"], train_dataset=work["pairs"], device=ctx.device)
    losses = [trainer.train_step(trainer.train_pairs[:batch])]
    synchronize(ctx)
    start, tokens = time.perf_counter(), 0
    for step in range(1, sizes.bench_steps + 1):
        chunk = trainer.train_pairs[step * batch : (step + 1) * batch]
        tokens += sum(2 * len(p.prompt_ids) + len(p.chosen_ids) + len(p.rejected_ids) for p in chunk)
        losses.append(trainer.train_step(chunk))
    synchronize(ctx)
    _report(ctx, figures, tokens / (time.perf_counter() - start))
    figures.update(steps=sizes.bench_steps, loss_last=losses[-1], precision=trainer.precision)
    checks.require(finite(losses), "a benchmark loss is not finite")
    del trainer


def _trl() -> Any:
    """TRL's CPO module, or a skip saying why it cannot be imported."""
    try:
        return importlib.import_module(TRL_MODULE)
    except ImportError as error:
        raise StageSkip(f"{TRL_MODULE} is not importable ({error}); `make bench` installs TRL") from None


def _step_clock() -> Any:
    """A callback timing the steps after the first (which compiles and builds optimizer state)."""
    from transformers import TrainerCallback

    class StepClock(TrainerCallback):
        start = end = 0.0

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            import torch

            if torch.cuda.is_available():
                torch.cuda.synchronize()
            if state.global_step == 1:
                self.start = time.perf_counter()
            self.end = time.perf_counter()

    return StepClock()


def _run_trl(ctx: Context, figures: dict, checks: Checks, liger: bool) -> None:
    cpo, sizes, work = _trl(), ctx.sizes, workload(ctx)
    from datasets import Dataset  # a dependency of TRL: present once TRL imports

    batch, steps = sizes.bench_batch, sizes.bench_steps
    args = cpo.CPOConfig(
        output_dir=str(ctx.work / ("bench_trl_liger" if liger else "bench_trl")), loss_type="simpo", cpo_alpha=0.0,
        simpo_gamma=1.0, beta=2.0, per_device_train_batch_size=batch, max_steps=steps + 1, learning_rate=1e-6,
        lr_scheduler_type="constant", max_length=sizes.bench_lengths[1], bf16=ctx.cuda, use_cpu=not ctx.cuda,
        use_liger_kernel=liger, logging_steps=10_000, save_strategy="no", report_to=[], disable_tqdm=True,
    )  # fmt: skip
    pairs = work["pairs"][: batch * (steps + 1)]
    model, clock = _fresh(ctx), _step_clock()
    reset_peak_memory(ctx)
    trainer = cpo.CPOTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(pairs),
        processing_class=work["tokenizer"],
        callbacks=[clock],
    )
    output = trainer.train()
    # Word-level tokenizer: a pair's tokens are its words (prompt twice: once per response).
    per_pair = sum(len(p["prompt"].split()) * 2 + len(p["chosen"].split()) + len(p["rejected"].split()) for p in pairs)
    _report(ctx, figures, per_pair / len(pairs) * batch * steps / max(clock.end - clock.start, 1e-9))
    figures.update(steps=steps, train_loss=output.training_loss, tokens="mean pair length x pairs of the timed steps")
    checks.require(finite([output.training_loss]), "TRL's training loss is not finite")
    del trainer


def stage_bench_trl(ctx: Context, figures: dict, checks: Checks) -> None:
    """TRL's CPOTrainer(loss_type="simpo") on the same model and pairs."""
    if ctx.skip_trl:
        raise StageSkip("--skip-trl")
    _run_trl(ctx, figures, checks, liger=False)


def stage_bench_trl_liger(ctx: Context, figures: dict, checks: Checks) -> None:
    """TRL with `use_liger_kernel=True` (Liger's Triton kernels: CUDA only)."""
    if ctx.skip_trl:
        raise StageSkip("--skip-trl")
    _trl()
    if importlib.util.find_spec("liger_kernel") is None:
        raise StageSkip("liger-kernel is not installed")
    if not ctx.cuda:
        raise StageSkip("Liger's Triton kernels need CUDA")
    _run_trl(ctx, figures, checks, liger=True)
