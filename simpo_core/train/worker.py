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
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from simpo_core.errors import ConfigError, DataError
from simpo_core.models import DEVICE_PATTERN
from simpo_core.train.config import SimPOConfig
from simpo_core.train.job_file import TRAIN_GROUP, job_config, read_job_values
from simpo_core.train.quantized import check_quantization
from simpo_core.train.training_folder import FINAL_DIR, TrainResult, record_finished

logger = logging.getLogger(__name__)

JOB_KEYS = ("model", "train_data", "eval_data", "trust_remote_code", "device", "quantization", TRAIN_GROUP)


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
    # The pairs first: a wrong path fails in a moment, not after the model loads (or `tiny` builds).
    train_rows = read_pairs(job.train_data)
    eval_rows = read_pairs(job.eval_data) if job.eval_data else None
    # Under torchrun with fsdp each process reads only its shards of the checkpoint (`sharded_start`).
    sharded = job.config.strategy == "fsdp" and not quantization and under_torchrun()
    with seeded(job.config.seed, "cpu"):  # weights the checkpoint lacks start alike, whatever loads beside
        empty = empty_starting_model(job.model, job.trust_remote_code) if sharded else None
        model, tokenizer = empty or load_model_and_tokenizer(
            job.model, trust_remote_code=job.trust_remote_code, **quantization
        )
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
        record_finished(output_dir, result)
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
