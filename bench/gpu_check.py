"""GPU check (a script, not a test): does every GPU path work, and how fast is training?

Usage: python bench/gpu_check.py [--steps 300] [--bench-steps 10] [--skip-trl]   (make gpu-check)

On one CUDA GPU, in order, each printing a line to stderr:
1. bf16-mixed full fine-tune and LoRA of a ~100M-parameter Llama built from config on the
   synthetic data (byte tokenizer), `--steps` steps each: the loss must fall and stay finite.
   Then the same model under torchrun in one process with `strategy: ddp` and `strategy: fsdp`
   (bf16-mixed, sharded checkpoints), against the job run without torchrun.
2. Held-out evaluation and generation of the trained model on the GPU (`evaluate_saved`
   with `device="cuda"`, the same call as `simpo evaluate`).
3. Packed vs padded forward on the same pairs: equal log-probs, tokens/s of each; packed through
   FlexAttention (the CUDA default) and through the per-sequence loop, with the path that ran.
4. Trainer benchmark on the Llama-3.2-1B shape from config (hidden 2048, 16 layers, vocab
   128,256, tied embeddings; bf16) with 512-1,024-token pairs of varied length: ours against
   TRL's `CPOTrainer(loss_type="simpo")` and, where Liger installs, `use_liger_kernel=True`.
   Tokens/s, peak GPU memory and MFU (6 × non-embedding parameters × tokens/s over the
   measured bf16 matmul FLOP/s).
The last stdout line is one JSON object with every number. Exits 2 without CUDA.
"""

import argparse
import json
import math
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]


def log(message: str) -> None:
    print(f"[gpu-check] {message}", file=sys.stderr, flush=True)


def small_llama(vocab_size: int, **overrides):
    """A Llama built from config; the defaults give ~100M parameters at a byte vocabulary."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    shape = dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, num_key_value_heads=12)
    shape.update(intermediate_size=2048, max_position_embeddings=2048, tie_word_embeddings=True)
    shape.update(overrides)
    config = LlamaConfig(vocab_size=vocab_size, pad_token_id=0, bos_token_id=None, eos_token_id=1, **shape)
    return LlamaForCausalLM(config)


def check_training(steps: int, lora: bool, out: Path) -> dict:
    """Train on synthetic pairs; the mean loss of the last 10% of steps must be below the first 10%."""
    from simpo_core.data.synthetic import generate_pairs
    from simpo_core.tiny_model import build_tiny_tokenizer
    from simpo_core.train.config import LoraSettings, SimPOConfig
    from simpo_core.train.trainer import SimPOTrainer

    tokenizer = build_tiny_tokenizer()
    model = small_llama(len(tokenizer))
    config = SimPOConfig.preset(
        "tiny",
        lr=1e-3 if lora else 3e-4,
        max_steps=steps,
        logging_steps=1,
        eval_steps=0,
        save_steps=0,
        output_dir=out,
        precision="bf16-mixed",
        lora=LoraSettings(r=16, alpha=32) if lora else None,
    )
    trainer = SimPOTrainer(
        model, config, tokenizer=tokenizer, train_dataset=generate_pairs(4000, seed=1), device="cuda"
    )
    start = time.perf_counter()
    history = trainer.train()
    losses = [entry["loss"] for entry in history if "loss" in entry]
    tenth = max(len(losses) // 10, 1)
    first, last = sum(losses[:tenth]) / tenth, sum(losses[-tenth:]) / tenth
    if not all(math.isfinite(x) for x in losses) or not last < first:
        raise SystemExit(f"{'LoRA' if lora else 'full'} training did not learn: loss {first:.4f} -> {last:.4f}")
    folder = trainer.save_model(str(out / "final"))
    params = sum(p.numel() for p in trainer.model.parameters())
    log(f"{'LoRA' if lora else 'full'}: {params / 1e6:.0f}M params, loss {first:.3f} -> {last:.3f} in {steps} steps")
    return {
        "params": params,
        "loss_first": first,
        "loss_last": last,
        "seconds": time.perf_counter() - start,
        "dir": folder,
    }


def check_engines(steps: int, out: Path) -> dict:
    """The ~100M Llama under torchrun with one process, `ddp` and `fsdp` (FSDP2 with a bf16
    MixedPrecisionPolicy), bf16-mixed, sharded checkpoints included: each must learn, and its
    weights are compared with the same job trained without torchrun (the one-process fast path)."""
    import os
    import subprocess

    import yaml
    from safetensors.torch import load_file

    from simpo_core.data.synthetic import generate_pairs
    from simpo_core.tiny_model import build_tiny_tokenizer
    from simpo_core.train.distributed import torchrun_command
    from simpo_core.train.worker import read_history

    tokenizer, model_dir, data = build_tiny_tokenizer(), out / "start", out / "pairs.jsonl"
    small_llama(len(tokenizer)).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    data.write_text("".join(json.dumps(row) + "\n" for row in generate_pairs(2000, seed=1)))
    results, weights = {}, {}
    for name in ("single", "ddp", "fsdp"):
        simpo = {"preset": "tiny", "lr": 3e-4, "max_steps": steps, "save_steps": max(steps // 2, 1), "eval_steps": 0}
        simpo["logging_steps"] = max(steps // 10, 1)
        simpo.update(precision="bf16-mixed", strategy="fsdp" if name == "single" else name, output_dir=str(out / name))
        job = out / f"{name}.yaml"
        job.write_text(yaml.safe_dump({"model": str(model_dir), "train_data": str(data), "simpo": simpo}))
        worker = ["-m", "simpo_core.train.worker", "--config", str(job)]
        command = [sys.executable, *worker] if name == "single" else torchrun_command(worker, 1)
        start = time.perf_counter()
        subprocess.run(command, check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
        seconds = time.perf_counter() - start
        losses = [entry["loss"] for entry in read_history(out / name) if "loss" in entry]
        if not all(math.isfinite(x) for x in losses) or not losses[-1] < losses[0]:
            raise SystemExit(f"{name} training did not learn: loss {losses[0]:.4f} -> {losses[-1]:.4f}")
        weights[name] = load_file(str(out / name / "final" / "model.safetensors"))
        drift = max((weights[name][k].float() - weights["single"][k].float()).abs().max().item() for k in weights[name])
        results[name] = {
            "seconds": seconds,
            "loss_first": losses[0],
            "loss_last": losses[-1],
            "max_abs_vs_single": drift,
        }
        log(
            f"{name}: loss {losses[0]:.3f} -> {losses[-1]:.3f}, {seconds:.0f} s with start-up, max |w - single| {drift:.2e}"
        )
    return results


def check_evaluation(model_dir: str) -> dict:
    """The evaluation step on the GPU: held-out log-probs, generation, synthetic judge."""
    import torch

    from simpo_core.data.synthetic import generate_pairs
    from simpo_core.eval.saved import evaluate_saved
    from simpo_core.eval.settings import EvalSettings

    torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    settings = EvalSettings(device="cuda", generation_samples=16, max_length=256, max_prompt_length=128)
    block = evaluate_saved(model_dir, generate_pairs(200, seed=9), settings).heldout["trained"]
    if torch.cuda.max_memory_allocated() == 0:
        raise SystemExit("evaluation allocated no GPU memory: the model did not run on the GPU")
    log(
        f"evaluation on GPU: reward accuracy {block['reward_accuracy']:.3f}, generation {block['generation']['samples']}"
    )
    return {"reward_accuracy": block["reward_accuracy"], "seconds": time.perf_counter() - start}


def varied_pairs(n: int, vocab_size: int, seed: int = 0) -> list[dict[str, str]]:
    """Word pairs of 512-1,024 tokens in all: prompt 128-384 words, responses 192-640 each."""
    from trainer_workload import SPECIAL_TOKENS

    rng, first = random.Random(seed), len(SPECIAL_TOKENS)

    def words(k: int) -> str:
        return " ".join(f"w{rng.randrange(first, vocab_size)}" for _ in range(k))

    pairs = []
    for _ in range(n):
        prompt = rng.randint(128, 384)
        budget = rng.randint(512, 1024) - prompt
        pairs.append({"prompt": words(prompt), "chosen": words(budget), "rejected": words(rng.randint(64, budget))})
    return pairs


def time_logps(model, batch: dict, tokens: int) -> dict:
    """Log-probs and forward tokens/s of one batch (5 timed no-grad forwards after a warm-up),
    then the gradient of layer 0's query projection from one backward."""
    import torch

    from simpo_core.train.logps import sequence_logps

    with torch.no_grad():
        sequence_logps(model, batch)  # warm-up (and compilation)
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(5):
            sums, _ = sequence_logps(model, batch)
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    model.zero_grad(set_to_none=True)
    sequence_logps(model, batch)[0].float().sum().backward()
    grad = model.model.layers[0].self_attn.q_proj.weight.grad.float()
    return {"logps": sums.float().cpu(), "tokens_per_s": 5 * tokens / seconds, "grad": grad}


def check_packing(vocab_size: int = 32000) -> dict:
    """Packed and padded forwards of the same pairs give the same log-probs; tokens/s of each.

    The packed row runs through the CUDA default (compiled FlexAttention, one kernel per layer)
    and through the per-sequence SDPA loop, reporting the path that actually ran (a failing
    FlexAttention falls back to the loop with a warning); then the gradients of both paths,
    and how many graphs torch.compile adds over three more row lengths (it should stay ≤ 1).
    """
    import torch
    from torch._dynamo.utils import counters
    from trainer_workload import build_tokenizer

    from simpo_core.train.logps import packed_attention, sequence_logps
    from simpo_core.train.packing import last_packed_attention_path, pack_pairs, set_packed_attention_backend
    from simpo_core.train.tokenization import collate_pairs, encode_pairs

    tokenizer = build_tokenizer(vocab_size)
    model = small_llama(vocab_size).to("cuda", torch.bfloat16).eval()
    pairs = encode_pairs(tokenizer, varied_pairs(8, vocab_size), 1024, 512)
    tokens = sum(len(p.chosen_ids) + len(p.rejected_ids) + 2 * len(p.prompt_ids) for p in pairs)
    runs = (("padded", "auto", collate_pairs(pairs, 0)), ("packed", "auto", pack_pairs(pairs)))
    results, paths = {}, {"padded": "sdpa"}
    with packed_attention(model):
        for name, backend, batch in runs + (("packed_loop", "loop", pack_pairs(pairs)),):
            set_packed_attention_backend(backend)
            results[name] = time_logps(model, {k: v.cuda() for k, v in batch.items()}, tokens)
            paths[name] = paths.get(name) or last_packed_attention_path()
        set_packed_attention_backend("auto")
        graphs_before = counters["stats"]["unique_graphs"]
        with torch.no_grad():
            for n in (3, 5, 7):
                sequence_logps(model, {k: v.cuda() for k, v in pack_pairs(pairs[:n]).items()})
        new_graphs = counters["stats"]["unique_graphs"] - graphs_before
    scale = results["padded"]["logps"].abs().max().item()
    gaps = {k: (results[k]["logps"] - results["padded"]["logps"]).abs().max().item() for k in ("packed", "packed_loop")}
    flex_grad, loop_grad = results["packed"]["grad"], results["packed_loop"]["grad"]
    grad_gap = ((flex_grad - loop_grad).norm() / loop_grad.norm()).item()
    if max(gaps.values()) > 1e-2 * scale or grad_gap > 5e-2:
        raise SystemExit(f"packed and padded differ: log-prob gaps {gaps} (scale {scale:.1f}), grad gap {grad_gap:.3g}")
    speeds = {k: round(v["tokens_per_s"]) for k, v in results.items()}
    log(f"packing: paths {paths}; max |Δ logp| {gaps}; relative grad gap {grad_gap:.3g}; tokens/s {speeds}")
    log(f"packing: {new_graphs} new compiled graphs over 3 more packed row lengths")
    return {
        "paths": paths,
        "max_abs_diff": gaps["packed"],
        "max_abs_diff_loop": gaps["packed_loop"],
        "relative_grad_gap": grad_gap,
        "new_graphs_over_3_lengths": new_graphs,
        **{f"{k}_tokens_per_s": v for k, v in speeds.items()},
    }


def llama_1b(vocab_size: int):
    """The Llama-3.2-1B shape, from config (random weights)."""
    return small_llama(
        vocab_size,
        hidden_size=2048,
        num_hidden_layers=16,
        num_attention_heads=32,
        num_key_value_heads=8,
        intermediate_size=8192,
        tie_word_embeddings=True,
    )


def bench_ours(pairs: list[dict], steps: int, batch: int) -> dict:
    import torch
    from trainer_workload import build_tokenizer

    from simpo_core.train.config import SimPOConfig
    from simpo_core.train.trainer import SimPOTrainer

    tokenizer = build_tokenizer(128256)
    config = SimPOConfig(
        lr=1e-6, batch_size=batch, max_length=1024, max_prompt_length=512, warmup_ratio=0.0, save_steps=0,
        lr_scheduler="constant", precision="bf16-mixed", output_dir=Path(tempfile.mkdtemp()), max_steps=steps + 1,
    )  # fmt: skip
    trainer = SimPOTrainer(llama_1b(128256), config, tokenizer=tokenizer, train_dataset=pairs, device="cuda")
    trainer.train_step(trainer.train_pairs[:batch])  # warm-up (kernels, optimizer state)
    torch.cuda.synchronize()
    start, tokens = time.perf_counter(), 0
    for step in range(1, steps + 1):
        chunk = trainer.train_pairs[step * batch : (step + 1) * batch]
        tokens += sum(2 * len(p.prompt_ids) + len(p.chosen_ids) + len(p.rejected_ids) for p in chunk)
        trainer.train_step(chunk)
    torch.cuda.synchronize()
    return {"tokens_per_s": tokens / (time.perf_counter() - start)}


def bench_trl(pairs: list[dict], steps: int, batch: int, liger: bool) -> dict:
    from datasets import Dataset
    from trainer_workload import build_tokenizer
    from trl.experimental.cpo import CPOConfig, CPOTrainer

    args = CPOConfig(
        output_dir=tempfile.mkdtemp(), loss_type="simpo", cpo_alpha=0.0, simpo_gamma=1.0, beta=2.0,
        per_device_train_batch_size=batch, max_steps=steps + 1, learning_rate=1e-6, lr_scheduler_type="constant",
        max_length=1024, bf16=True, use_liger_kernel=liger, logging_steps=10_000, save_strategy="no", report_to=[],
        disable_tqdm=True,
    )  # fmt: skip
    data = Dataset.from_list(pairs[: batch * (steps + 1)])
    trainer = CPOTrainer(
        model=llama_1b(128256), args=args, train_dataset=data, processing_class=build_tokenizer(128256)
    )
    start = time.perf_counter()
    output = trainer.train()
    seconds = time.perf_counter() - start
    tokens = sum(len(" ".join(p.values()).split()) + len(p["prompt"].split()) for p in pairs[: batch * (steps + 1)])
    return {"tokens_per_s": tokens / seconds, "train_loss": output.training_loss, "note": "includes the first step"}


def benchmark(steps: int, skip_trl: bool) -> dict:
    """Ours, TRL and TRL + Liger on the 1B shape; each result gains peak GPU memory and MFU."""
    import gc

    import torch
    from bench_trainer import measure_matmul

    batch, pairs = 4, varied_pairs(4 * (steps + 2), 128256, seed=1)
    flops_per_token = 6 * (sum(p.numel() for p in llama_1b(128256).parameters()) - 2048 * 128256)
    peak = measure_matmul(1, "cuda", size=8192)["matmul_flops"]
    runs = {"ours": lambda: bench_ours(pairs, steps, batch)}
    if skip_trl:
        log("TRL skipped (--skip-trl)")
    else:
        try:
            import trl  # noqa: F401

            runs["trl"] = lambda: bench_trl(pairs, steps, batch, liger=False)
            try:
                import liger_kernel  # noqa: F401

                runs["trl_liger"] = lambda: bench_trl(pairs, steps, batch, liger=True)
            except ImportError:
                log("liger-kernel is not installed: the Liger run is skipped")
        except ImportError:
            log("trl is not installed (make bench installs it): the TRL runs are skipped")
    results = {}
    for name, run in runs.items():
        gc.collect()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        result = run()
        result.update(peak_gpu_gb=torch.cuda.max_memory_allocated() / 2**30)
        result.update(mfu=flops_per_token * result["tokens_per_s"] / peak)
        log(
            f"{name}: {result['tokens_per_s']:.0f} tokens/s, peak {result['peak_gpu_gb']:.1f} GiB, MFU {result['mfu']:.1%}"
        )
        results[name] = result
    return {"matmul_tflops": peak / 1e12, **results}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300, help="training steps of each ~100M check")
    parser.add_argument("--bench-steps", type=int, default=10, help="timed steps of each 1B benchmark run")
    parser.add_argument("--skip-trl", action="store_true", help="benchmark our trainer only")
    args = parser.parse_args()
    import torch

    if not torch.cuda.is_available():
        print(
            "gpu-check needs a CUDA GPU and a CUDA build of torch; this machine has none (nothing was run)",
            file=sys.stderr,
        )
        return 2
    from simpo_core.env import apply_process_defaults

    apply_process_defaults()
    out = Path(tempfile.mkdtemp(prefix="gpu-check-"))
    report = {"device": torch.cuda.get_device_name(), "torch": torch.__version__}
    report["full"] = check_training(args.steps, lora=False, out=out / "full")
    report["lora"] = check_training(args.steps, lora=True, out=out / "lora")
    report["engines"] = check_engines(args.steps // 3, out / "engines")
    report["evaluation"] = check_evaluation(report["full"]["dir"])
    report["packing"] = check_packing()
    report["benchmark"] = benchmark(args.bench_steps, args.skip_trl)
    print(json.dumps(report, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
