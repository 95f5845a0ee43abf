"""Two trainings on one machine: wall time alone and two started together, by thread rule.

Usage: python bench/bench_concurrent.py [--steps 60] [--pairs 300] [--repeats 3] [--modes auto,default]
                                        [--json FILE]
       python bench/bench_concurrent.py --knee [--knee-steps 10]

The job is what `simpo train` runs (`python -m simpo_core.train.worker --config job.yaml`): the
embedded tiny model from scratch (`tiny-scratch` preset, batch 8), `--pairs` synthetic pairs,
`--steps` steps, no checkpoints and no evaluation. Each mode runs it alone, then two copies
started together, `--repeats` times (modes interleaved); the medians are printed:

    auto     num_threads unset: the automatic rule (simpo_core.threads)
    default  num_threads = every available core: torch's own default, what ran before the rule

pair/alone is the slower of the two concurrent runs over the run alone (2.0 is fair sharing of
the cores). CPU seconds are user + system of each training process. The machine's 1-minute
load average is printed before and after: on a shared machine the figures move with it.

`--knee` prints seconds per training step at 1 … N threads (N = available cores) for the tiny
model and the 20 M-parameter benchmark model (bench/trainer_workload.py, vocabulary 32,000),
each thread count taking turns, best and median of `--knee-steps` steps: where more threads
stop paying.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]


def write_job(folder: Path, name: str, steps: int, num_threads: int | None, model: Path, data: Path) -> Path:
    """A worker job file: tiny model from scratch, synthetic pairs, nothing saved but the model."""
    import yaml

    simpo = {
        "preset": "tiny-scratch",
        "max_steps": steps,
        "save_steps": 0,
        "eval_steps": 0,
        "logging_steps": max(1, steps // 2),
        "output_dir": str(folder / name),
        "num_threads": num_threads,
    }
    job = {"model": str(model), "train_data": str(data), "device": "cpu", "train": simpo}
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(job))
    return path


def run_together(jobs: list[Path]) -> list[dict[str, float]]:
    """Start one worker per job at the same moment; wall and CPU seconds of each."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    env.setdefault("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "simpo_core.train.worker", "--config", str(job)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for job in jobs
    ]
    results: dict[int, dict[str, float]] = {}
    for _ in processes:
        pid, status, usage = os.wait4(-1, 0)  # each child's own CPU time, as it ends
        results[pid] = {"wall": time.perf_counter() - start, "cpu": usage.ru_utime + usage.ru_stime}
        if os.waitstatus_to_exitcode(status) != 0:
            process = next(p for p in processes if p.pid == pid)
            raise SystemExit(f"training {jobs[processes.index(process)]} failed:\n{process.stderr.read().decode()}")
    for process in processes:
        process.returncode = 0  # reaped above
        process.stderr.close()
    return [results[p.pid] for p in processes]


def measure(args: argparse.Namespace) -> dict:
    from simpo_core.data.synthetic import generate_pairs
    from simpo_core.threads import available_cores
    from simpo_core.tiny_model import save_tiny

    folder = Path(tempfile.mkdtemp(prefix="bench-concurrent-"))
    model = save_tiny(folder / "tiny")
    data = folder / "pairs.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in generate_pairs(args.pairs, seed=0)))
    threads = {"auto": None, "default": available_cores()}
    runs: dict[str, dict[str, list]] = {mode: {"alone": [], "pair": []} for mode in args.modes}
    for repeat in range(args.repeats):
        for mode in args.modes:
            alone, a, b = (
                write_job(folder, f"{mode}-{name}-{repeat}", args.steps, threads[mode], model, data)
                for name in ("alone", "a", "b")
            )
            runs[mode]["alone"].append(run_together([alone])[0])
            runs[mode]["pair"].append(run_together([a, b]))
            print(f"  repeat {repeat + 1} {mode}: alone {runs[mode]['alone'][-1]['wall']:.1f} s, two at once "
                  + ", ".join(f"{r['wall']:.1f}" for r in runs[mode]["pair"][-1]) + " s", flush=True)  # fmt: skip
    return {"cores": available_cores(), "steps": args.steps, "pairs": args.pairs, "runs": runs}


def summarise(result: dict) -> list[dict]:
    """Median figures per mode: alone, each of two at once, and their ratio."""
    rows = []
    for mode, runs in result["runs"].items():
        alone = statistics.median(r["wall"] for r in runs["alone"])
        slower = statistics.median(max(r["wall"] for r in pair) for pair in runs["pair"])
        faster = statistics.median(min(r["wall"] for r in pair) for pair in runs["pair"])
        rows.append(
            {
                "mode": mode,
                "alone_s": alone,
                "pair_fast_s": faster,
                "pair_slow_s": slower,
                "pair_over_alone": slower / alone,
                "cpu_alone_s": statistics.median(r["cpu"] for r in runs["alone"]),
                "cpu_pair_s": statistics.median(sum(r["cpu"] for r in pair) / 2 for pair in runs["pair"]),
            }
        )
    return rows


def print_table(rows: list[dict], result: dict, loads: tuple[float, float]) -> None:
    print(f"\n{result['steps']} steps of the tiny model, {result['pairs']} pairs, {result['cores']} cores available")
    header = (
        f"{'mode':>8} {'alone s':>8} {'two at once s':>14} {'pair/alone':>10} {'cpu s alone':>11} {'cpu s each':>10}"
    )
    print(header + "\n" + "-" * len(header))
    for row in rows:
        pair = f"{row['pair_fast_s']:.1f}, {row['pair_slow_s']:.1f}"
        print(
            f"{row['mode']:>8} {row['alone_s']:>8.1f} {pair:>14} {row['pair_over_alone']:>10.2f} "
            f"{row['cpu_alone_s']:>11.1f} {row['cpu_pair_s']:>10.1f}"
        )
    by_mode = {row["mode"]: row for row in rows}
    if {"auto", "default"} <= set(by_mode):
        ratio = by_mode["auto"]["alone_s"] / by_mode["default"]["alone_s"]
        print(f"auto/default alone: {ratio:.2f}   (load average {loads[0]:.2f} before, {loads[1]:.2f} after)")


def knee(steps: int) -> None:
    """Seconds per step at each thread count, for the tiny and the benchmark model."""
    import torch
    from trainer_workload import build_model, build_pairs, build_tokenizer

    from simpo_core.data.synthetic import generate_pairs
    from simpo_core.models import load_model_and_tokenizer
    from simpo_core.threads import available_cores
    from simpo_core.tiny_model import save_tiny
    from simpo_core.train.config import SimPOConfig
    from simpo_core.train.trainer import SimPOTrainer

    counts = sorted({1, 2, 4, 8, 16, available_cores()} & set(range(1, available_cores() + 1)))
    out = Path(tempfile.mkdtemp(prefix="bench-knee-"))
    model, tokenizer = load_model_and_tokenizer(str(save_tiny(out / "tiny")))
    workloads = {
        "tiny": (model, tokenizer, generate_pairs(8 * steps * len(counts), seed=0), 8, 256),
        "bench-32k": (build_model(32000), build_tokenizer(32000), build_pairs(4 * steps * len(counts), 32000), 4, 512),
    }
    for name, (model, tokenizer, pairs, batch, length) in workloads.items():
        config = SimPOConfig(batch_size=batch, max_length=length, max_prompt_length=length // 2, lr=1e-5,
                             precision="fp32", save_steps=0, output_dir=out / name)  # fmt: skip
        trainer = SimPOTrainer(model, config, tokenizer=tokenizer, train_dataset=pairs)
        times: dict[int, list[float]] = {n: [] for n in counts}
        for step in range(steps * len(counts)):
            threads = counts[step % len(counts)]  # thread counts take turns: load changes hit all alike
            torch.set_num_threads(threads)
            start = time.perf_counter()
            trainer.train_step(trainer.train_pairs[step * batch : (step + 1) * batch])
            times[threads].append(time.perf_counter() - start)
        parameters = sum(p.numel() for p in trainer.model.parameters())
        cells = [f"{n} thr {min(t[1:]):.3f}/{statistics.median(t[1:]):.3f} s" for n, t in times.items()]
        print(f"{name:>10} ({parameters / 1e6:.1f} M params), best/median per step: " + "; ".join(cells), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--pairs", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--modes", type=lambda s: s.split(","), default=["auto", "default"])
    parser.add_argument("--json", type=Path, help="also write the runs and the summary here")
    parser.add_argument("--knee", action="store_true", help="seconds per step by thread count instead")
    parser.add_argument("--knee-steps", type=int, default=10)
    args = parser.parse_args()
    if args.knee:
        knee(args.knee_steps)
        return
    before = os.getloadavg()[0]
    result = measure(args)
    rows = summarise(result)
    print_table(rows, result, (before, os.getloadavg()[0]))
    summary = {"summary": rows, **result}
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1))
    print(json.dumps({"summary": rows, "cores": result["cores"], "steps": result["steps"]}))


if __name__ == "__main__":
    main()
