"""Training-state memory per process under each strategy, and what it means for an 8B model.

Usage: python bench/bench_memory.py [--vocab 32000] [--processes 2] [--no-startup] [--json FILE]

For one process, and for `--processes` CPU processes (gloo) under `ddp` and under `fsdp`,
each process trains the benchmark Llama (bench/trainer_workload.py, float32, AdamW) for one
step, accumulates the gradients of a second step, and reports the bytes it holds of
parameters, gradients and optimizer state: its local shards under `fsdp`, whole tensors
otherwise. Activations and the one layer that FSDP gathers at a time are not counted.

The measured bytes per parameter then project a full fine-tune of a Llama-3-8B shape
(8.03e9 parameters) on 8 GPUs: `fsdp` divides the state by the process count (with the
measured padding overhead), `ddp` keeps all of it in every process.

Then (unless `--no-startup`) the start-up peaks of bench/startup_memory.py: each process's peak
resident memory from its start to the end of optimizer step 1, trained from a ~300 M-parameter
checkpoint, under `ddp` and `fsdp`, and under `fsdp` before and after sharded start-up; in the
JSON under `startup`.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LLAMA_8B_PARAMETERS = 8.03e9
GPUS = 8
PAIRS_PER_STEP = 8


def measure(vocab: int, strategy: str) -> dict:
    """This process's parameter, gradient and optimizer-state bytes after one step and the
    backward of the next."""
    sys.path[:0] = [str(ROOT), str(ROOT / "bench")]
    import torch
    from trainer_workload import build_model, build_pairs, build_tokenizer

    from simpo_core.train.config import SimPOConfig
    from simpo_core.train.trainer import SimPOTrainer

    torch.manual_seed(0)
    tokenizer, model = build_tokenizer(vocab), build_model(vocab)
    config = SimPOConfig(
        batch_size=PAIRS_PER_STEP // 2,
        gradient_accumulation_steps=2,
        max_length=256,
        max_prompt_length=128,
        lr=1e-6,
        save_steps=0,
        strategy=strategy,
        output_dir=Path(tempfile.mkdtemp()) / "out",
        max_steps=2,
    )
    trainer = SimPOTrainer(model, config, tokenizer=tokenizer, train_dataset=build_pairs(2 * PAIRS_PER_STEP, vocab))
    trainer.train_step(trainer.train_pairs[:PAIRS_PER_STEP])  # builds the optimizer and its state
    trainer._accumulate(trainer.train_pairs[PAIRS_PER_STEP:], backward=True)  # the next step's gradients
    params = [p for p in trainer.model.parameters()]
    counts = {
        "parameters": sum(_bytes(p) for p in params),
        "gradients": sum(_bytes(p.grad) for p in params if p.grad is not None),
        "optimizer": sum(_bytes(t) for s in trainer.optimizer.state.values() for t in s.values() if torch.is_tensor(t)),
    }
    return {
        **counts,
        "total": sum(counts.values()),
        "parameter_count": sum(_numel(p) for p in trainer.model.parameters()),
        "rank": trainer.rank,
        "world_size": trainer.world_size,
        "strategy": trainer.parallel.strategy,
    }


def _local(tensor):
    from torch.distributed.tensor import DTensor

    return tensor.to_local() if isinstance(tensor, DTensor) else tensor


def _bytes(tensor) -> int:
    local = _local(tensor)
    return local.numel() * local.element_size()


def _numel(tensor) -> int:
    return tensor.numel()  # the full (global) count, also for a DTensor


def run_case(vocab: int, strategy: str, processes: int) -> list[dict]:
    """Every process's figures for one case (one process runs without torchrun)."""
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "figures"
        worker = [str(Path(__file__).resolve()), "--worker", strategy, "--vocab", str(vocab), "--out", str(out)]
        if processes == 1:
            command = [sys.executable, *worker]
        else:
            command = [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--standalone",
                f"--nproc-per-node={processes}",
                *worker,
            ]
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
        subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL)
        return [json.loads(path.read_text()) for path in sorted(out.glob("rank-*.json"))]


def report(vocab: int, processes: int) -> dict:
    single = run_case(vocab, "ddp", 1)[0]
    cases = {"1 process": single}
    for strategy in ("ddp", "fsdp"):
        ranks = run_case(vocab, strategy, processes)
        cases[f"{strategy}, {processes} processes"] = max(ranks, key=lambda figures: figures["total"])
    per_parameter = single["total"] / single["parameter_count"]
    fsdp_ratio = cases[f"fsdp, {processes} processes"]["total"] / single["total"]
    overhead = fsdp_ratio * processes  # 1.0 = perfect sharding; padding and unsharded scalars add to it
    projection = {
        "bytes_per_parameter": per_parameter,
        "ddp_gib_per_gpu": LLAMA_8B_PARAMETERS * per_parameter / 2**30,
        "fsdp_gib_per_gpu": LLAMA_8B_PARAMETERS * per_parameter * overhead / GPUS / 2**30,
    }
    return {"vocab": vocab, "cases": cases, "fsdp_ratio": fsdp_ratio, "llama_8b_on_8_gpus": projection}


def print_table(result: dict) -> None:
    single = result["cases"]["1 process"]["total"]
    print(
        f"bench Llama (vocab {result['vocab']}, {result['cases']['1 process']['parameter_count']:,} parameters), float32 + AdamW"
    )
    print(f"{'case':<20} {'params MB':>10} {'grads MB':>10} {'optim MB':>10} {'total MB':>10} {'vs 1 proc':>10}")
    for name, figures in result["cases"].items():
        mb = [figures[key] / 2**20 for key in ("parameters", "gradients", "optimizer", "total")]
        print(
            f"{name:<20} {mb[0]:>10.1f} {mb[1]:>10.1f} {mb[2]:>10.1f} {mb[3]:>10.1f} {figures['total'] / single:>10.3f}"
        )
    projection = result["llama_8b_on_8_gpus"]
    print(
        f"Llama-3-8B full fine-tune on {GPUS} GPUs ({projection['bytes_per_parameter']:.1f} bytes/parameter measured): "
        f"fsdp {projection['fsdp_gib_per_gpu']:.1f} GiB per GPU, ddp {projection['ddp_gib_per_gpu']:.1f} GiB per GPU "
        "(training state only; add activations)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument(
        "--no-startup", dest="startup", action="store_false", help="skip the start-up peaks (about 8 minutes)"
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        figures = measure(args.vocab, args.worker)
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / f"rank-{figures['rank']}.json").write_text(json.dumps(figures))
        return
    result = report(args.vocab, args.processes)
    print_table(result)
    if args.startup:
        from startup_memory import print_startup_table, startup_report

        result["startup"] = startup_report(args.processes)
        print_startup_table(result["startup"])
    print(json.dumps(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
