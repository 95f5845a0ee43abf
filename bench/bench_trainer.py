"""Trainer throughput and peak memory: our SimPOTrainer against TRL's CPOTrainer(loss_type="simpo").

Usage: python bench/bench_trainer.py [--vocabs 32000,128256] [--steps 12] [--warmup 2] [--threads 2]
                                     [--device cpu|cuda] [--json FILE]

Both trainers do the same work, each in a fresh process (so peak RSS is its own): the same
seeded Llama (bench/trainer_workload.py), the same pairs in the same order (4 pairs per
step, no shuffling), the same loss (SimPO, β 2, γ 1, no SFT term), AdamW at lr 1e-6 with
gradient clipping at 1.0, float32 on CPU with `--threads` threads (bf16 autocast on CUDA).
Steps after the warm-up are timed. A third process measures the machine's float32 matmul
throughput (`torch.mm` of two 2048² matrices, same threads), the denominator of MFU:

    MFU = 6 × (parameters − input embedding) × non-pad tokens/s ÷ matmul FLOP/s

The table and one JSON object per vocabulary are printed; `--json` also writes them to a file.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BATCH_PAIRS = 4


def _setup_worker(threads: int) -> None:
    sys.path[:0] = [str(ROOT), str(ROOT / "bench")]
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    torch.set_num_threads(threads)


def measure_matmul(threads: int, device: str, size: int = 2048, repeats: int = 20) -> dict:
    """FLOP/s of `torch.mm` on two `size²` float32 matrices (bf16 on CUDA)."""
    import torch

    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    a, b = (torch.randn(size, size, device=device, dtype=dtype) for _ in range(2))
    best = 0.0
    for _ in range(3):  # best of three rounds: the machine is shared
        torch.mm(a, b)
        _sync(device)
        start = time.perf_counter()
        for _ in range(repeats):
            torch.mm(a, b)
        _sync(device)
        best = max(best, 2 * size**3 * repeats / (time.perf_counter() - start))
    return {"matmul_flops": best, "threads": threads}


def run_ours(vocab: int, steps: int, warmup: int, device: str) -> dict:
    """Our trainer: `train_step` on consecutive slices of 4 encoded pairs."""
    from trainer_workload import build_model, build_pairs, build_tokenizer, count_parameters

    from simpo_core.train.config import SimPOConfig
    from simpo_core.train.trainer import SimPOTrainer

    tokenizer, model = build_tokenizer(vocab), build_model(vocab)
    params = count_parameters(model)
    config = SimPOConfig(
        beta=2.0,
        gamma=1.0,
        lr=1e-6,
        batch_size=BATCH_PAIRS,
        max_length=512,
        max_prompt_length=256,
        warmup_ratio=0.0,
        lr_scheduler="constant",
        save_steps=0,
        precision="bf16-mixed" if device == "cuda" else "fp32",
        output_dir=Path(tempfile.mkdtemp()) / "ours",
        max_steps=warmup + steps,
    )
    trainer = SimPOTrainer(
        model.to(device), config, tokenizer=tokenizer, train_dataset=build_pairs(BATCH_PAIRS * (warmup + steps), vocab)
    )
    times, response_tokens, tokens = [], 0, 0
    for step in range(warmup + steps):
        pairs = trainer.train_pairs[step * BATCH_PAIRS : (step + 1) * BATCH_PAIRS]
        _sync(device)
        start = time.perf_counter()
        trainer.train_step(pairs)
        _sync(device)
        if step >= warmup:
            times.append(time.perf_counter() - start)
            response_tokens += sum(len(p.chosen_ids) + len(p.rejected_ids) for p in pairs)
            tokens += sum(2 * len(p.prompt_ids) + len(p.chosen_ids) + len(p.rejected_ids) for p in pairs)
    return {"step_times": times, "response_tokens": response_tokens, "tokens": tokens, **params, **_peak_memory(device)}


def run_trl(vocab: int, steps: int, warmup: int, device: str) -> dict:
    """TRL's CPOTrainer(loss_type="simpo", cpo_alpha=0): a plain SimPO run, pairs in order."""
    import torch
    from datasets import Dataset
    from trainer_workload import build_model, build_pairs, build_tokenizer
    from transformers import TrainerCallback
    from trl.experimental.cpo import CPOConfig, CPOTrainer

    class InOrder(CPOTrainer):
        def _get_train_sampler(self, *args, **kwargs):  # the same pairs per step as ours
            return torch.utils.data.SequentialSampler(self.train_dataset)

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.times, self.start = [], 0.0

        def on_step_begin(self, args, state, control, **kwargs):
            _sync(device)
            self.start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            _sync(device)
            self.times.append(time.perf_counter() - self.start)

    tokenizer, model = build_tokenizer(vocab), build_model(vocab)
    args = CPOConfig(
        output_dir=tempfile.mkdtemp(),
        loss_type="simpo",
        cpo_alpha=0.0,
        simpo_gamma=1.0,
        beta=2.0,
        per_device_train_batch_size=BATCH_PAIRS,
        max_steps=warmup + steps,
        learning_rate=1e-6,
        lr_scheduler_type="constant",
        max_grad_norm=1.0,
        max_length=512,
        bf16=device == "cuda",
        gradient_checkpointing=False,
        use_cpu=device == "cpu",
        logging_steps=10_000,
        save_strategy="no",
        report_to=[],
        dataloader_num_workers=0,
        disable_tqdm=True,
    )
    timer = StepTimer()
    trainer = InOrder(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(build_pairs(BATCH_PAIRS * (warmup + steps), vocab)),
        processing_class=tokenizer,
        callbacks=[timer],
    )
    trainer.train()
    return {"step_times": timer.times[warmup:], **_peak_memory(device)}


def _sync(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def _peak_memory(device: str) -> dict:
    import resource

    peak = {"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}  # Linux: kilobytes
    if device == "cuda":
        import torch

        peak["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return peak


def _in_subprocess(kind: str, args: argparse.Namespace, vocab: int) -> dict:
    command = [
        sys.executable,
        __file__,
        "--worker",
        kind,
        "--vocabs",
        str(vocab),
        "--steps",
        str(args.steps),
        "--warmup",
        str(args.warmup),
        "--threads",
        str(args.threads),
        "--device",
        args.device,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"{kind} worker failed (vocab {vocab}):\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def summarise(vocab: int, device: str, ours: dict, trl: dict, matmul: dict, load: tuple[float, ...]) -> dict:
    """One row of the table: s/step, tokens/s, peak memory, ratios and MFU for both trainers."""
    steps = len(ours["step_times"])
    row = {
        "vocab": vocab,
        "device": device,
        "threads": matmul["threads"],
        "steps": steps,
        "load_1m": round(load[0], 2),
        "matmul_gflops": round(matmul["matmul_flops"] / 1e9, 1),
        "response_tokens_per_step": ours["response_tokens"] / steps,
        "tokens_per_step": ours["tokens"] / steps,
        "flops_params": ours["flops_params"],
    }
    memory = "peak_gpu_mb" if device == "cuda" else "peak_rss_mb"
    for name, result in (("ours", ours), ("trl", trl)):
        seconds = sum(result["step_times"])
        flops = 6 * ours["flops_params"] * ours["tokens"] / seconds
        row[name] = {
            "s_per_step": seconds / len(result["step_times"]),
            "response_tokens_per_s": ours["response_tokens"] / seconds,
            "peak_mb": result[memory],
            "mfu": flops / matmul["matmul_flops"],
        }
    row["ratio_tokens_per_s"] = row["ours"]["response_tokens_per_s"] / row["trl"]["response_tokens_per_s"]
    row["ratio_peak_memory"] = row["ours"]["peak_mb"] / row["trl"]["peak_mb"]
    return row


def print_table(rows: list[dict]) -> None:
    memory = "peak GPU MB" if rows and rows[0]["device"] == "cuda" else "peak RSS MB"
    header = f"{'vocab':>7} {'trainer':>7} {'s/step':>7} {'resp tok/s':>10} {memory:>12} {'MFU':>6}"
    print(header)
    print("-" * len(header))
    for row in rows:
        for name in ("ours", "trl"):
            r = row[name]
            print(
                f"{row['vocab']:>7} {name:>7} {r['s_per_step']:>7.3f} {r['response_tokens_per_s']:>10.0f} {r['peak_mb']:>12.0f} {r['mfu']:>6.1%}"
            )
        print(
            f"{'':>7} {'ours/trl':>7} {1 / row['ratio_tokens_per_s']:>7.2f} {row['ratio_tokens_per_s']:>10.2f} "
            f"{row['ratio_peak_memory']:>12.2f}   (load {row['load_1m']}, matmul {row['matmul_gflops']} GFLOP/s, "
            f"{row['tokens_per_step']:.0f} tokens/step)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocabs", default="32000,128256")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--json", type=Path, help="also write the rows to this file")
    parser.add_argument("--worker", choices=("ours", "trl", "matmul"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _setup_worker(args.threads)
        vocab = int(args.vocabs)
        if args.worker == "matmul":
            result = measure_matmul(args.threads, args.device)
        else:
            result = (run_ours if args.worker == "ours" else run_trl)(vocab, args.steps, args.warmup, args.device)
        print(json.dumps(result))
        return
    rows = []
    for vocab in (int(v) for v in args.vocabs.split(",")):
        load = os.getloadavg()
        matmul = _in_subprocess("matmul", args, vocab)
        ours = _in_subprocess("ours", args, vocab)
        trl = _in_subprocess("trl", args, vocab)
        rows.append(summarise(vocab, args.device, ours, trl, matmul, load))
        print(json.dumps(rows[-1]), flush=True)
    print()
    print_table(rows)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
