"""`simpo train`: SimPO training only (what the `train-simpo` task runs).

The YAML config:

    model: tiny                  # 'tiny', a saved model folder, or a hub id
    train_data: pairs.jsonl      # JSONL or Parquet, canonical or flat layout
    eval_data: heldout.jsonl     # optional
    simpo:                       # SimPOConfig fields (docs/training.md)
      preset: tiny               # optional: start from a named preset
      lr: 1.0e-3
      output_dir: outputs/run1

The final model goes to `<output_dir>/final`.
"""

import argparse
import logging
from pathlib import Path
from typing import Any

HELP = "train with SimPO from a YAML config (what the train-simpo task runs)"
TOP_LEVEL_KEYS = ("model", "train_data", "eval_data", "simpo")
HISTORY_FILE = "history.json"  # metrics per logged step, read back by the train-simpo task
logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, required=True, help="YAML training config")
    parser.add_argument("--resume", action="store_true", help="continue from the newest complete checkpoint")


def main(args: argparse.Namespace) -> int:
    import torch

    from simpo_core.models import load_model_and_tokenizer, write_provenance
    from simpo_core.train.trainer import SimPOTrainer

    model_source, train_rows, eval_rows, config = load_train_config(args.config)
    torch.manual_seed(config.seed)
    model, tokenizer = load_model_and_tokenizer(model_source, trust_remote_code=config.trust_remote_code)
    trainer = SimPOTrainer(model, config, tokenizer=tokenizer, train_dataset=train_rows, eval_dataset=eval_rows)
    history = trainer.train(resume=args.resume)
    path = trainer.save_model(str(Path(config.output_dir) / "final"))
    write_history(history, Path(config.output_dir) / HISTORY_FILE)
    if trainer.rank == 0:
        write_provenance(path, model_source)
    last = next((entry for entry in reversed(history) if "loss" in entry), {})
    evaluated = next((entry for entry in reversed(history) if "eval_loss" in entry), {})
    logger.info(
        "done: %d steps, final loss %s, eval accuracy %s; model saved to %s",
        trainer.global_step,
        _fmt(last.get("loss")),
        _fmt(evaluated.get("eval_rewards/accuracies")),
        path,
    )
    return 0


def write_history(history: list[dict[str, Any]], path: Path) -> None:
    """Write the metric history (the main process only, under torchrun)."""
    import json

    from simpo_core.train.distributed import rank

    if rank() == 0:
        path.write_text(json.dumps(history, indent=1))


def load_train_config(path: Path) -> tuple[str, Any, Any, Any]:
    """Read and check the YAML: `(model source, train rows, eval rows or None, SimPOConfig)`.

    Raises:
        ConfigError: unknown or missing keys, a bad SimPO field, or unreadable data.
    """
    from simpo_core.errors import ConfigError
    from simpo_core.train.config import SimPOConfig, read_yaml_mapping
    from simpo_core.train.presets import preset_values

    values = read_yaml_mapping(path)
    unknown = sorted(set(values) - set(TOP_LEVEL_KEYS))
    if unknown:
        raise ConfigError(f"{path}: unknown key {unknown[0]!r}; the keys are {', '.join(TOP_LEVEL_KEYS)}")
    for key in ("model", "train_data"):
        if not values.get(key):
            raise ConfigError(
                f"{path}: missing {key!r} (model: 'tiny', a folder or a hub id; train_data: a JSONL or Parquet file)"
            )
    if not isinstance(values.get("simpo") or {}, dict):
        raise ConfigError(f"{path}: 'simpo' must be a mapping of SimPOConfig fields")
    simpo = dict(values.get("simpo") or {})
    preset = simpo.pop("preset", None)
    config = SimPOConfig.from_dict({**(preset_values(preset) if preset else {}), **simpo}, source=f"{path} (simpo)")
    base = Path(path).parent
    train_rows = read_pairs(_relative(values["train_data"], base))
    eval_rows = read_pairs(_relative(values["eval_data"], base)) if values.get("eval_data") else None
    return str(values["model"]), train_rows, eval_rows, config


def read_pairs(path: Path):
    """Read a JSONL (or JSON array) or Parquet file of pairs into a pandas DataFrame."""
    import pandas as pd

    from simpo_core.errors import ConfigError, DataError

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


def _relative(value: str, base: Path) -> Path:
    """Data paths are read relative to the working directory, then to the config's folder."""
    path = Path(value).expanduser()
    if path.is_absolute() or path.exists():
        return path
    return base / path


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else "n/a"
