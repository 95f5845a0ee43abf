"""gpu-check stage `engines`: the ~100M Llama under torchrun with one process, `ddp` and
`fsdp`, against the same job run without torchrun."""

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from gpu_common import Checks, Context, learned, start_model

ROOT = Path(__file__).resolve().parent.parent
ENGINES = ("single", "ddp", "fsdp")

# Relative weight drift of a one-process ddp/fsdp run from the run without torchrun:
# |w - w_single| / |w_single - w_start| over all weights. DDP on one process computes what the
# plain run computes; FSDP2's bf16 MixedPrecisionPolicy casts every weight to bfloat16 where
# autocast keeps norms and the residual stream in float32, so it drifts further. A run that
# did not train, or trained on other data, drifts by about 1.
DRIFT_BOUNDS = {"ddp": 0.1, "fsdp": 0.5}


def run_command(command: list[str], timeout: int, log: Path, env: dict[str, str]) -> float:
    """Run `command` in its own process group, output to `log`; returns its seconds.

    Raises:
        RuntimeError: it exited non-zero or ran past `timeout` (its whole group is then killed:
            torchrun's workers are grandchildren, which `subprocess.run(timeout=...)` would leave).
    """
    import signal

    start = time.perf_counter()
    with log.open("w") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            code = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"ran past its {timeout} s limit and was killed; {_tail(log)}") from None
        finally:  # on the limit, and when the stage itself is interrupted: no worker outlives it
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
    if code != 0:
        raise RuntimeError(f"exited with {code}; {_tail(log)}")
    return time.perf_counter() - start


def _tail(log: Path, lines: int = 8) -> str:
    text = log.read_text(errors="replace").strip().splitlines()
    return f"last lines of {log}: " + " | ".join(text[-lines:])


def _engine_job(ctx: Context, name: str, model_dir: Path, data: Path) -> Path:
    import yaml

    steps = ctx.sizes.engine_steps
    simpo = {
        "preset": "tiny-scratch",
        "lr": ctx.sizes.train_lr[0],
        "max_steps": steps,
        "save_steps": max(steps // 2, 1),
        "eval_steps": 0,
    }
    simpo.update(logging_steps=1, precision=ctx.precision, output_dir=str(ctx.work / "engines" / name))
    simpo.update(strategy="fsdp" if name == "single" else name, **ctx.sizes.train)
    job = ctx.work / "engines" / f"{name}.yaml"
    job.write_text(yaml.safe_dump({"model": str(model_dir), "train_data": str(data), "train": simpo}))
    return job


def _engine_env(ctx: Context) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    if not ctx.cuda:
        env["CUDA_VISIBLE_DEVICES"] = ""  # the dry run stays on the CPU on a GPU machine too
    return env


def _drift(weights: dict, reference: dict, start: dict) -> tuple[float, float]:
    """`(|w - ref| / |ref - start|, max |w - ref|)` over every tensor, in float32."""
    import torch

    apart = moved = 0.0
    largest = 0.0
    for key, value in reference.items():
        difference = weights[key].float() - value.float()
        apart += difference.pow(2).sum().item()
        moved += (value.float() - start[key].float()).pow(2).sum().item()
        largest = max(largest, difference.abs().max().item())
    return (apart / moved) ** 0.5 if moved else float(torch.inf), largest


def stage_engines(ctx: Context, figures: dict, checks: Checks) -> None:
    """The ~100M Llama under torchrun with one process, `ddp` and `fsdp` (FSDP2, bf16
    MixedPrecisionPolicy; sharded checkpoints), against the same job run without torchrun:
    each learns, and its weights stay within `DRIFT_BOUNDS` of the plain run's."""
    from safetensors.torch import load_file

    from simpo_core.data.synthetic import generate_pairs
    from simpo_core.train.distributed import torchrun_command
    from simpo_core.train.training_folder import read_history

    if importlib.util.find_spec("pandas") is None:  # fail now, not after three worker start-ups
        checks.require(False, "pandas is missing: the training worker reads its pairs file with it")
        return
    model_dir, data = start_model(ctx), ctx.work / "engines" / "pairs.jsonl"
    data.parent.mkdir(parents=True, exist_ok=True)
    batch = ctx.sizes.train.get("batch_size", 16)
    data.write_text("".join(json.dumps(row) + "\n" for row in generate_pairs(ctx.sizes.engine_steps * batch, seed=1)))
    begin, weights = load_file(str(model_dir / "model.safetensors")), {}
    for name in ENGINES:
        worker = ["-m", "simpo_core.train.worker", "--config", str(_engine_job(ctx, name, model_dir, data))]
        command = [sys.executable, *worker] if name == "single" else torchrun_command(worker, 1)
        log = ctx.work / "engines" / f"{name}.log"
        try:
            seconds = run_command(command, ctx.sizes.command_timeout_s, log, _engine_env(ctx))
        except RuntimeError as error:
            checks.require(False, f"{name}: {error}")
            continue
        losses = [entry["loss"] for entry in read_history(ctx.work / "engines" / name) if "loss" in entry]
        result = figures[name] = {"seconds": seconds}
        learned(result, checks, losses, name)
        weights[name] = load_file(str(ctx.work / "engines" / name / "final" / "model.safetensors"))
        if name != "single" and "single" in weights:
            result["relative_drift"], result["max_abs_drift"] = _drift(weights[name], weights["single"], begin)
            result["drift_bound"] = DRIFT_BOUNDS[name]
            drift = result["relative_drift"]
            checks.require(drift <= DRIFT_BOUNDS[name], f"{name} drifted {drift:.3g} from the plain run")
            result["max_abs_loss_gap"] = _loss_gap(ctx, name)


def _loss_gap(ctx: Context, name: str) -> float:
    """Largest difference of the logged step losses of run `name` and the plain run."""
    from simpo_core.train.training_folder import read_history

    runs = [[e["loss"] for e in read_history(ctx.work / "engines" / run) if "loss" in e] for run in (name, "single")]
    return max(abs(a - b) for a, b in zip(*runs))
