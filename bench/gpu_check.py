"""GPU check (a script, not a test): does every GPU path work, and how fast is training?

Usage: python bench/gpu_check.py [--quick | --full | --dry-run] [--stages a,b] [--steps N]
                                 [--bench-steps N] [--skip-trl] [--work DIR]      (make gpu-check)

On one CUDA GPU, stage by stage (docs/performance.md, "gpu-check", says what each proves):
environment, train_full, train_lora, engines, evaluation, packing, bench_ours, bench_trl,
bench_trl_liger. `--quick` (the default) fits in about five minutes on one H100/H200
compilation included; `--full` runs longer shapes; `--dry-run` runs every stage on the CPU
with tiny shapes (float32), skipping with the reason what needs CUDA.

Every stage prints one JSON line to stdout when it ends, flushed, and appends it to
`WORK/results.jsonl`: `{"stage", "ok", "skipped", "seconds", ...figures, "error"}`. A failed
assertion or an exception fails that stage only; the next one runs. Each stage has a time
limit: past it the stage is interrupted, and if it does not return (a hung kernel) the
process writes the lines it owes and exits. The last line is the summary: `{"stage":
"summary", "ok", "passed", "failed", "skipped", "not_run", ...}`. Exit status: 0 when no stage
failed, 1 otherwise, 2 without CUDA (nothing run), 3 after a hung stage, 130 when interrupted.
"""

import argparse
import faulthandler
import logging
import os
import signal
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stdout
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from gpu_bench import stage_bench_ours, stage_bench_trl, stage_bench_trl_liger  # noqa: E402
from gpu_common import MODES, Checks, Context, StageSkip, dumps  # noqa: E402
from gpu_engines import ENGINES, stage_engines  # noqa: E402
from gpu_packing import stage_packing  # noqa: E402
from gpu_stages import (  # noqa: E402
    stage_environment,
    stage_evaluation,
    stage_train_full,
    stage_train_lora,
)

Stage = Callable[[Context, dict, Checks], None]
STAGES: dict[str, Stage] = {
    "environment": stage_environment,
    "train_full": stage_train_full,
    "train_lora": stage_train_lora,
    "engines": stage_engines,
    "evaluation": stage_evaluation,
    "packing": stage_packing,
    "bench_ours": stage_bench_ours,
    "bench_trl": stage_bench_trl,
    "bench_trl_liger": stage_bench_trl_liger,
}
HANG_GRACE_S = 60  # after the time limit, how long an uninterruptible stage gets before the process ends


def log(message: str) -> None:
    print(f"[gpu-check] {message}", file=sys.stderr, flush=True)


class StageTimeout(BaseException):
    """Raised in the main thread when a stage runs past its limit. A BaseException, so that the
    `except Exception` of a fallback inside the stage cannot swallow it."""


class Warnings(logging.Handler):
    """Collects the warnings simpo_core logs during one stage (a FlexAttention fallback's cause)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if len(self.messages) < 5:
            self.messages.append(f"{record.name}: {record.getMessage()}"[:400])


class Report:
    """Writes each stage's line as it ends (stdout and `results.jsonl`, flushed) and the summary."""

    def __init__(self, path: Path, planned: list[str]) -> None:
        self.path, self.planned, self.lines = path, planned, {}
        self.lock, self.start = threading.Lock(), time.perf_counter()
        self.stdout = sys.stdout  # stages run with stdout sent to stderr: only these lines reach it

    def write(self, line: dict) -> None:
        with self.lock:
            text = dumps(line)
            print(text, file=self.stdout, flush=True)
            with self.path.open("a") as results:
                results.write(text + "\n")
                results.flush()
                os.fsync(results.fileno())
            if line["stage"] != "summary":
                self.lines[line["stage"]] = line

    def summary(self, ctx: Context, **extra: object) -> dict:
        """Write the summary line; returns it."""
        lines = list(self.lines.values())
        failed = [line["stage"] for line in lines if not line["ok"]]
        line = {
            "stage": "summary",
            "ok": not failed and len(lines) == len(self.planned),
            "passed": [x["stage"] for x in lines if x["ok"] and not x.get("skipped")],
            "failed": failed,
            "skipped": {x["stage"]: x["skipped"] for x in lines if x.get("skipped")},
            "not_run": [name for name in self.planned if name not in self.lines],
            "seconds": time.perf_counter() - self.start,
            "mode": ctx.mode,
            "device": ctx.device,
            "results": str(self.path),
            **extra,
        }
        self.write(line)
        return line


@contextmanager
def time_limit(name: str, seconds: int, on_hang: Callable[[], None]) -> Iterator[None]:
    """Interrupt the stage (StageTimeout in the main thread) after `seconds`; if it has not
    returned `HANG_GRACE_S` later (blocked in native code), call `on_hang`, which ends the process."""

    def interrupt(signum: int, frame: object) -> None:
        raise StageTimeout(f"stage {name} ran past its {seconds} s limit")

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.alarm(seconds)
    watchdog = threading.Timer(seconds + HANG_GRACE_S, on_hang)
    watchdog.daemon = True
    watchdog.start()
    try:
        yield
    finally:
        signal.alarm(0)
        watchdog.cancel()
        signal.signal(signal.SIGALRM, previous)


def stage_limit(ctx: Context, name: str) -> int:
    """Seconds stage `name` may run: the engines stage outlasts its subprocesses' own limits,
    so that each of them, not the stage, is what times out."""
    if name == "engines":
        return len(ENGINES) * ctx.sizes.command_timeout_s + 120
    return ctx.sizes.stage_timeout_s


def release_memory() -> None:
    """Hand what a finished stage held back to the GPU, so the next stage's peak is its own."""
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def run_stage(ctx: Context, name: str, report: Report) -> dict:
    """Run one stage under its time limit; write and return its line. Never raises, except
    KeyboardInterrupt."""
    figures, checks, warnings = {}, Checks(), Warnings()
    line: dict = {"stage": name, "ok": True, "skipped": None}
    start = time.perf_counter()

    def hung() -> None:  # the watchdog thread: the main thread is stuck in native code
        faulthandler.dump_traceback(all_threads=True)
        error = f"stage {name} did not return {HANG_GRACE_S} s after its time limit; the process was ended"
        measured = dict(figures)  # a copy: the stuck thread may still be writing to it
        report.write(
            {**line, "ok": False, "seconds": time.perf_counter() - start, **measured, "warnings": None, "error": error}
        )
        report.summary(ctx, error=error)
        os._exit(3)

    logging.getLogger("simpo_core").addHandler(warnings)
    log(f"{name}: starting")
    try:  # what libraries print (TRL prints its logs) goes to stderr, so stdout stays JSON lines
        with time_limit(name, stage_limit(ctx, name), hung), redirect_stdout(sys.stderr):
            STAGES[name](ctx, figures, checks)
    except StageSkip as skip:
        line["skipped"] = str(skip) or "skipped"
    except (Exception, StageTimeout) as error:
        traceback.print_exc(file=sys.stderr)
        checks.failures.append(f"{type(error).__name__}: {error}"[:2000])
    finally:
        logging.getLogger("simpo_core").removeHandler(warnings)
        release_memory()
    line.update(ok=not checks.failures, seconds=time.perf_counter() - start, **figures)
    line.update(warnings=warnings.messages or None, error="; ".join(checks.failures) or None)
    report.write(line)
    log(f"{name}: {'skipped (' + line['skipped'] + ')' if line['skipped'] else 'ok' if line['ok'] else 'FAILED'}")
    return line


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", dest="mode", action="store_const", const="quick", help="short shapes (default)")
    mode.add_argument("--full", dest="mode", action="store_const", const="full", help="longer shapes")
    mode.add_argument("--dry-run", dest="mode", action="store_const", const="dry-run", help="CPU, tiny shapes")
    parser.set_defaults(mode="quick")
    parser.add_argument("--stages", help=f"comma-separated subset of {','.join(STAGES)}")
    parser.add_argument("--steps", type=int, help="training steps of train_full and train_lora")
    parser.add_argument("--bench-steps", type=int, help="timed steps of each benchmark")
    parser.add_argument("--skip-trl", action="store_true", help="skip the TRL benchmarks")
    parser.add_argument("--work", type=Path, help="folder for models and results.jsonl (default: a new temp folder)")
    args = parser.parse_args(argv)
    args.stages = args.stages.split(",") if args.stages else list(STAGES)
    unknown = [name for name in args.stages if name not in STAGES]
    if unknown:
        parser.error(f"unknown stages {unknown}; choose from {list(STAGES)}")
    return args


def build_context(args: argparse.Namespace) -> Context:
    from dataclasses import replace

    sizes = MODES[args.mode]
    if args.steps:
        sizes = replace(sizes, train_steps=args.steps, lora_steps=args.steps)
    if args.bench_steps:
        sizes = replace(sizes, bench_steps=args.bench_steps)
    cuda = args.mode != "dry-run"
    work = args.work or Path(tempfile.mkdtemp(prefix="gpu-check-"))
    work.mkdir(parents=True, exist_ok=True)
    return Context(
        mode=args.mode,
        device="cuda" if cuda else "cpu",
        precision="bf16-mixed" if cuda else "fp32",
        sizes=sizes,
        work=work,
        skip_trl=args.skip_trl,
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing here downloads; a box without network must not wait
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    import torch

    if args.mode != "dry-run" and not torch.cuda.is_available():
        log(
            "needs a CUDA GPU and a CUDA build of torch; this machine has none (nothing was run; --dry-run runs on CPU)"
        )
        return 2
    from simpo_core.env import apply_process_defaults

    apply_process_defaults()
    ctx = build_context(args)
    report = Report(ctx.work / "results.jsonl", args.stages)
    log(f"{ctx.mode} on {ctx.device}; models and results in {ctx.work}")
    try:
        for name in args.stages:
            run_stage(ctx, name, report)
    except KeyboardInterrupt:
        report.summary(ctx, error="interrupted")
        return 130
    return 0 if report.summary(ctx)["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
