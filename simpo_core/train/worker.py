"""The training step: a YAML job in, a saved model out.

    python -m simpo_core.train.worker --config train.yaml [--resume]

is what `simpo train` runs and what each process runs under torchrun. With `num_processes`
or `nnodes` above 1 and no torchrun around it, it starts torchrun itself (`launch`). The job file:

    model: tiny                  # 'tiny', a saved model folder, or a hub id
    trust_remote_code: false     # optional: run code shipped with a hub model (off for safety)
    device: auto                 # optional: auto, cpu, cuda or cuda:N (under torchrun: auto or cuda)
    quantization: none           # optional: none, 4bit or 8bit (QLoRA: the lora field is required)
    train_data: pairs.jsonl      # JSONL, JSON or Parquet, canonical or flat layout
    eval_data: heldout.jsonl     # optional
    train:                       # SimPOConfig fields (docs/training.md), as the flow's train group
      preset: tiny               # optional: auto (default: the model's own), none, or a named preset
      lr: 1.0e-3
      output_dir: outputs/run1

The final model goes to `<output_dir>/final`, the metric history to
`<output_dir>/history.json`. The flow's `train-simpo` task calls `build_trainer` and
`finish_training` in its own process, adding only its progress reporting.
"""

import argparse
import json
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from simpo_core.errors import ConfigError, DataError
from simpo_core.models import DEVICE_PATTERN
from simpo_core.train.config import SimPOConfig
from simpo_core.train.job_file import TRAIN_GROUP, job_config, read_job_values
from simpo_core.train.quantized import check_quantization

logger = logging.getLogger(__name__)

JOB_KEYS = ("model", "train_data", "eval_data", "trust_remote_code", "device", "quantization", TRAIN_GROUP)
HISTORY_FILE = "history.json"  # metrics per logged step, read back after a torchrun job
FINAL_DIR = "final"
DONE_FILE = "final.json"  # written last: the training in this folder is finished and reusable
LOCK_FILE = ".training.lock"
LOCK_LOG_SECONDS = 60


@dataclass
class TrainJob:
    """What to train: the starting model, the data files and the SimPO config."""

    model: str
    train_data: Path
    eval_data: Path | None
    config: SimPOConfig
    trust_remote_code: bool = False  # run code shipped with the model (logged when on)
    device: str = "auto"  # auto, cpu, cuda or cuda:N (`simpo_core.models.resolve_device`)
    quantization: str = "none"  # none, 4bit or 8bit: LoRA on a quantized base (`simpo_core.train.quantized`)

    def __post_init__(self) -> None:
        check_quantization(self.quantization, self.config)  # before any data or model is read

    def write(self, path: Path) -> Path:
        """Save as the YAML job file that `read_job` (and so the worker) reads."""
        import yaml

        values = {
            "model": self.model,
            "train_data": str(self.train_data),
            "eval_data": str(self.eval_data) if self.eval_data else None,
            "trust_remote_code": self.trust_remote_code,
            "device": self.device,
            "quantization": self.quantization,
            TRAIN_GROUP: self.config.model_dump(mode="json"),
        }
        path.write_text(yaml.safe_dump(values))
        return path


@dataclass
class TrainResult:
    """A finished training: the saved model, the steps run and every logged metric."""

    model_dir: Path
    steps: int
    history: list[dict[str, Any]]
    resumed_from_step: int | None = None  # the checkpoint this training continued from
    reused: bool = False  # True when a finished training was found and nothing was trained
    packed_attention_path: str = ""  # how the last packed call ran attention ("loop", "FlexAttention ...")
    packed_attention_fallbacks: int = 0  # packed calls that fell back to the loop after FlexAttention failed
    peak_memory_bytes: list[int] = field(default_factory=list)  # per rank, to the last step (GPU: allocated)

    @property
    def final_metrics(self) -> dict[str, Any]:
        """The last logged training metrics (empty when no step was logged)."""
        return next((entry for entry in reversed(self.history) if "loss" in entry), {})


def read_job(path: Path, overrides: list[str] | None = None) -> TrainJob:
    """Read and check a YAML job file (data paths relative to the working directory, then to the file),
    with `key=value` overrides by dotted path (`train.beta=3`, `model=/path`).

    Raises:
        ConfigError: unknown or missing keys, a bad SimPO field, or a missing data file.
    """
    values = read_job_values(path, overrides)
    unknown = sorted(set(values) - set(JOB_KEYS))
    if unknown:
        raise ConfigError(f"{path}: unknown key {unknown[0]!r}; the keys are {', '.join(JOB_KEYS)}")
    for key in ("model", "train_data"):
        if not values.get(key):
            raise ConfigError(
                f"{path}: missing {key!r} (model: 'tiny', a folder or a hub id; train_data: a JSONL or Parquet file)"
            )
    config = job_config(values, path)
    base = Path(path).parent
    eval_data = _relative(values["eval_data"], base) if values.get("eval_data") else None
    trust = values.get("trust_remote_code", False)
    if not isinstance(trust, bool):
        raise ConfigError(f"{path}: trust_remote_code must be true or false, got {trust!r}")
    device = str(values.get("device") or "auto")
    if not re.fullmatch(DEVICE_PATTERN, device):
        raise ConfigError(f"{path}: device must be auto, cpu, cuda or cuda:N, got {device!r}")
    quantization = str(values.get("quantization") or "none")
    data = _relative(values["train_data"], base)
    return TrainJob(str(values["model"]), data, eval_data, config, trust, device, quantization)


def read_pairs(path: Path) -> Any:
    """Read a JSONL (or JSON array) or Parquet file of pairs into a pandas DataFrame.

    Raises:
        ConfigError: the file is missing or of another type.
        DataError: the file cannot be parsed.
    """
    import pandas as pd

    if not path.is_file():
        raise ConfigError(f"data file {path} does not exist; check train_data / eval_data in the config")
    suffix = path.suffix.lower()
    try:
        if suffix in (".jsonl", ".ndjson"):
            return pd.read_json(path, lines=True, dtype=False)
        if suffix == ".json":
            return pd.read_json(path, dtype=False)
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(path)
    except ValueError as error:
        raise DataError(f"could not read {path}: {error}") from None
    raise ConfigError(f"data file {path} must be .jsonl, .json or .parquet (got {suffix or 'no suffix'})")


def build_trainer(job: TrainJob) -> Any:
    """Load the starting model and the data and build the `SimPOTrainer` (seeded by the config)."""
    from simpo_core.models import load_model_and_tokenizer
    from simpo_core.rng import seeded
    from simpo_core.train.launch import under_torchrun
    from simpo_core.train.quantized import adapter_only, load_options
    from simpo_core.train.sharded_start import empty_starting_model
    from simpo_core.train.trainer import SimPOTrainer

    quantization = load_options(job.quantization, job.config, job.device)  # none: nothing to add
    # Under torchrun with fsdp each process reads only its shards of the checkpoint (`sharded_start`).
    sharded = job.config.strategy == "fsdp" and not quantization and under_torchrun()
    with seeded(job.config.seed, "cpu"):  # weights the checkpoint lacks start alike, whatever loads beside
        empty = empty_starting_model(job.model, job.trust_remote_code) if sharded else None
        model, tokenizer = empty or load_model_and_tokenizer(
            job.model, trust_remote_code=job.trust_remote_code, **quantization
        )
    train_rows = read_pairs(job.train_data)
    eval_rows = read_pairs(job.eval_data) if job.eval_data else None
    config = adapter_only(job.quantization, job.config)
    return SimPOTrainer(
        model, config, tokenizer=tokenizer, train_dataset=train_rows, eval_dataset=eval_rows, device=job.device
    )


def finish_training(trainer: Any, job: TrainJob, history: list[dict[str, Any]]) -> TrainResult:
    """Save the model (`<output_dir>/final`, with its starting model recorded) and the history."""
    from simpo_core.models import write_provenance
    from simpo_core.train import distributed, packing

    peak_memory = distributed.peak_memory_bytes(trainer.device)  # before saving gathers the model in rank 0
    output_dir = Path(job.config.output_dir)
    model_dir = Path(trainer.save_model(str(output_dir / FINAL_DIR)))
    result = TrainResult(model_dir, trainer.global_step, history, trainer.resumed_from_step)
    result.packed_attention_path = packing.last_packed_attention_path()
    result.packed_attention_fallbacks = packing.packed_attention_fallbacks() - trainer.fallbacks_before
    result.peak_memory_bytes = peak_memory
    if trainer.rank == 0:  # under torchrun the main process writes the shared files
        write_provenance(model_dir, job.model)
        (output_dir / HISTORY_FILE).write_text(json.dumps(history, indent=1))
        done = {"steps": result.steps, "resumed_from_step": result.resumed_from_step}
        done.update(packed_attention_path=result.packed_attention_path, fallbacks=result.packed_attention_fallbacks)
        done.update(peak_memory_bytes=peak_memory)
        (output_dir / DONE_FILE).write_text(json.dumps(done))
    evaluated = next((entry for entry in reversed(history) if "eval_loss" in entry), {})
    logger.info(
        "done: %d steps, final loss %s, eval accuracy %s; model saved to %s",
        result.steps,
        _fmt(result.final_metrics.get("loss")),
        _fmt(evaluated.get("eval_rewards/accuracies")),
        model_dir,
    )
    return result


def run_training(job: TrainJob, resume: bool = False) -> TrainResult:
    """Train `job` from start to end (resuming from the newest complete checkpoint if asked)."""
    trainer = build_trainer(job)
    return finish_training(trainer, job, trainer.train(resume=resume))


def finished_training(output_dir: Path) -> TrainResult | None:
    """The training finished in `output_dir` (its model, steps and history), or None."""
    output_dir = Path(output_dir)
    if not (output_dir / DONE_FILE).is_file():
        return None
    done = json.loads((output_dir / DONE_FILE).read_text())
    result = TrainResult(output_dir / FINAL_DIR, done["steps"], read_history(output_dir), done["resumed_from_step"])
    result.packed_attention_path = done.get("packed_attention_path", "")
    result.packed_attention_fallbacks = done.get("fallbacks", 0)
    result.peak_memory_bytes = done.get("peak_memory_bytes", [])
    return result


def clear_training(output_dir: Path) -> None:
    """Forget a training in `output_dir` (checkpoints, final model, history) to start afresh."""
    import shutil

    folder = Path(output_dir)
    for path in folder.iterdir() if folder.is_dir() else []:
        if path.name == LOCK_FILE:
            continue
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()


@contextmanager
def training_lock(output_dir: Path) -> Iterator[None]:
    """Hold the folder's training lock: a second run of the same training waits here, then
    finds the first one's checkpoints or finished model instead of writing beside it.

    An advisory `flock`: it holds between processes on one machine and on shared file
    systems that implement it; it is released when the holder exits, even by SIGKILL.
    """
    import fcntl
    import time

    Path(output_dir).mkdir(parents=True, exist_ok=True)
    with (Path(output_dir) / LOCK_FILE).open("w") as handle:
        waited = 0.0
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if waited % LOCK_LOG_SECONDS == 0:
                    logger.info("another run is training in %s; waiting for it (%.0f s so far)", output_dir, waited)
                time.sleep(1.0)
                waited += 1.0
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def read_history(output_dir: Path) -> list[dict[str, Any]]:
    """The metric history a finished job wrote (e.g. under torchrun)."""
    return json.loads((Path(output_dir) / HISTORY_FILE).read_text())


def _relative(value: str, base: Path) -> Path:
    """Data paths are read relative to the working directory, then to the job file's folder."""
    path = Path(value).expanduser()
    if path.is_absolute() or path.exists():
        return path
    return base / path


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else "n/a"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, required=True, help="YAML training job (see simpo_core.train.worker)")
    parser.add_argument("--resume", action="store_true", help="continue from the newest complete checkpoint")


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m simpo_core.train.worker`; errors exit 2 with the message."""
    import sys

    from simpo_core.env import apply_process_defaults
    from simpo_core.errors import SimpoError

    parser = argparse.ArgumentParser(prog="python -m simpo_core.train.worker", description=__doc__.split("\n")[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    apply_process_defaults()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        train_job(read_job(args.config), resume=args.resume)
    except SimpoError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


def train_job(job: TrainJob, resume: bool = False) -> None:
    """What `simpo train` and the worker do with a job: start torchrun when it asks for more
    processes than this one, else train here (under torchrun, a failure is recorded for the launcher)."""
    from simpo_core.train import distributed, watchdog
    from simpo_core.train.launch import launch, needs_launch, record_failure, under_torchrun

    if needs_launch(job):
        launch(job, resume=resume)
        return
    watchdog.watch_launcher()  # under a launcher's torchrun: the job ends when the launcher does
    if distributed.rank() != 0:  # every process would print the same progress: only the main one does
        logging.getLogger().setLevel(logging.WARNING)
    try:
        run_training(job, resume=resume)
    except BaseException as error:
        if under_torchrun():
            record_failure(Path(job.config.output_dir), distributed.rank(), error)
        raise
    finally:
        distributed.close()


if __name__ == "__main__":
    raise SystemExit(main())
