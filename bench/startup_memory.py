"""Start-up peak memory per process: loading a checkpoint, sharding it and one optimizer step.

Usage: python bench/startup_memory.py [--processes 2] [--json FILE]   (also run by bench_memory.py)

The checkpoint is the ~300 M-parameter Llama of bench/trainer_workload.py (STARTUP_ARCHITECTURE),
saved with `save_pretrained` in bfloat16 (safetensors, 0.6 GB; 1.2 GB as float32 master
weights). `--processes` CPU processes (gloo) under torchrun each build the trainer from it and
run optimizer step 1 (fp32 + AdamW); each reports, in bytes:

    baseline_bytes  resident memory once python, torch, transformers, peft and the trainer
                    are imported, before the model is touched
    startup_bytes   peak resident memory (VmHWM of /proc/self/status) once the trainer is built
    peak_bytes      peak resident memory from process start to the end of optimizer step 1
    state_bytes     the training state it holds: parameters, gradients and AdamW state (its
                    shards under `fsdp`)

Two ways to start:

    after   what the worker does (`simpo_core.train.worker.build_trainer`): under `fsdp` the
            model is built on the meta device, sharded, and each process reads only its shards
            from the checkpoint; under `ddp` each process loads the checkpoint once
    before  (fsdp) every process loads the whole checkpoint, upcasts it and the trainer cuts
            its shards from rank 0's copy: what the worker did before sharded start-up, still
            the path of a model handed to SimPOTrainer

Each case runs under two CPU allocator settings: glibc's defaults, and `MALLOC_MMAP_THRESHOLD_`
at 1 MiB, where every tensor of 1 MiB or more goes back to the system when freed: the peaks
then count what torch holds rather than what glibc keeps of freed layers for reuse.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAIRS = 4  # pairs in optimizer step 1 (2 per process)
CASES = (("ddp", "after"), ("fsdp", "before"), ("fsdp", "after"))
ALLOCATORS = {"glibc": {}, "mmap-1MiB": {"MALLOC_MMAP_THRESHOLD_": str(2**20)}}


def status_bytes(field: str) -> int:
    """A memory figure of this process from /proc/self/status (`VmHWM`, `VmRSS`) in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


def measure(model_dir: Path, pairs_file: Path, strategy: str, start: str) -> dict:
    """This process's start-up figures: build the trainer `start`'s way, run optimizer step 1."""
    sys.path[:0] = [str(ROOT), str(ROOT / "bench")]
    import peft  # noqa: F401 (imported before the baseline is read, as the trainer imports it)
    import torch
    from transformers import LlamaForCausalLM  # noqa: F401

    from simpo_core.train.config import SimPOConfig
    from simpo_core.train.trainer import SimPOTrainer  # noqa: F401
    from simpo_core.train.worker import TrainJob, build_trainer

    baseline = status_bytes("VmRSS")
    config = SimPOConfig(
        batch_size=PAIRS // 2,
        max_length=128,
        max_prompt_length=64,
        lr=1e-6,
        save_steps=0,
        max_steps=1,
        strategy=strategy,
        output_dir=Path(tempfile.mkdtemp()) / "out",
    )
    job = TrainJob(str(model_dir), pairs_file, None, config)
    trainer = build_trainer(job) if start == "after" else _whole_model_trainer(job)
    startup = status_bytes("VmHWM")
    trainer.train_step(trainer.train_pairs[:PAIRS])
    peak = status_bytes("VmHWM")
    params = [_local(p) for p in trainer.model.parameters()]
    trainable = sum(p.numel() * p.element_size() for p, q in zip(params, trainer.model.parameters()) if q.requires_grad)
    optimizer = sum(
        _local(t).numel() * _local(t).element_size()
        for state in trainer.optimizer.state.values()
        for t in state.values()
        if torch.is_tensor(t)
    )
    state = sum(p.numel() * p.element_size() for p in params) + trainable + optimizer  # gradients: as trainables
    return {"rank": trainer.rank, "baseline_bytes": baseline, "startup_bytes": startup, "peak_bytes": peak} | {
        "state_bytes": state
    }


def _whole_model_trainer(job):
    """The trainer built from a whole loaded model: every process holds the checkpoint first."""
    from simpo_core.models import load_model_and_tokenizer
    from simpo_core.rng import seeded
    from simpo_core.train.trainer import SimPOTrainer
    from simpo_core.train.worker import read_pairs

    with seeded(job.config.seed, "cpu"):
        model, tokenizer = load_model_and_tokenizer(job.model)
    return SimPOTrainer(model, job.config, tokenizer=tokenizer, train_dataset=read_pairs(job.train_data))


def _local(tensor):
    from torch.distributed.tensor import DTensor

    return tensor.to_local() if isinstance(tensor, DTensor) else tensor


def prepare(folder: Path, vocab: int) -> tuple[Path, Path]:
    """Save the checkpoint and the pairs file into `folder`."""
    sys.path[:0] = [str(ROOT), str(ROOT / "bench")]
    from trainer_workload import build_pairs, save_startup_checkpoint

    model_dir = save_startup_checkpoint(folder / "model", vocab)
    pairs_file = folder / "pairs.jsonl"
    pairs_file.write_text("".join(json.dumps(pair) + "\n" for pair in build_pairs(PAIRS, vocab)))
    return model_dir, pairs_file


def run_case(
    model_dir: Path, pairs_file: Path, strategy: str, start: str, processes: int, allocator: str
) -> list[dict]:
    """Every process's figures for one strategy, start and allocator setting, in rank order."""
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "figures"
        worker = [str(Path(__file__).resolve()), "--worker", strategy, "--load", start]
        worker += ["--model", str(model_dir), "--pairs", str(pairs_file), "--out", str(out)]
        torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}"]
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
        env.update(ALLOCATORS[allocator])
        subprocess.run([*torchrun, *worker], check=True, env=env, stdout=subprocess.DEVNULL)
        return [json.loads(path.read_text()) for path in sorted(out.glob("rank-*.json"))]


def startup_report(processes: int = 2, vocab: int = 32000) -> dict:
    """Every rank's figures by allocator setting, strategy and start (`cases`), and per
    allocator setting the largest per-rank peaks of the `after` starts compared."""
    with tempfile.TemporaryDirectory() as folder:
        model_dir, pairs_file = prepare(Path(folder), vocab)
        size = sum(path.stat().st_size for path in model_dir.glob("*.safetensors"))
        cases: dict = {}
        for allocator in ALLOCATORS:
            for strategy, start in CASES:
                ranks = run_case(model_dir, pairs_file, strategy, start, processes, allocator)
                cases.setdefault(allocator, {}).setdefault(strategy, {})[start] = ranks
    return {
        "processes": processes,
        "checkpoint_bytes": size,
        "checkpoint_dtype": "bfloat16",
        "cases": cases,
        "fsdp_vs_ddp": {
            allocator: _peak(by["fsdp"]["after"]) / _peak(by["ddp"]["after"]) for allocator, by in cases.items()
        },
    }


def _peak(ranks: list[dict]) -> int:
    return max(rank["peak_bytes"] for rank in ranks)


def print_startup_table(result: dict) -> None:
    gib = 2**30
    print(
        f"start-up and step-1 peaks per process (GiB), {result['processes']} processes, checkpoint "
        f"{result['checkpoint_bytes'] / gib:.2f} GiB ({result['checkpoint_dtype']}), fp32 + AdamW"
    )
    columns = ("baseline", "start-up", "step 1", "state", "step 1 - baseline - state")
    print(f"{'allocator':<10} {'case':<13} {'rank':>4} " + " ".join(f"{c:>9}" for c in columns[:4]) + f" {columns[4]}")
    for allocator, strategies in result["cases"].items():
        for strategy, starts in strategies.items():
            for start, ranks in starts.items():
                for r in ranks:
                    over = r["peak_bytes"] - r["baseline_bytes"] - r["state_bytes"]
                    figures = [r[k] / gib for k in ("baseline_bytes", "startup_bytes", "peak_bytes", "state_bytes")]
                    print(
                        f"{allocator:<10} {strategy + ', ' + start:<13} {r['rank']:>4} "
                        + " ".join(f"{f:>9.2f}" for f in figures)
                        + f" {over / gib:>9.2f}"
                    )
    for allocator, ratio in result["fsdp_vs_ddp"].items():
        print(f"fsdp peak / ddp peak ({allocator}): {ratio:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--load", choices=("before", "after"), help=argparse.SUPPRESS)
    parser.add_argument("--model", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--pairs", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        figures = measure(args.model, args.pairs, args.worker, args.load)
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / f"rank-{figures['rank']}.json").write_text(json.dumps(figures))
        return
    result = startup_report(args.processes, args.vocab)
    print_startup_table(result)
    print(json.dumps(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
