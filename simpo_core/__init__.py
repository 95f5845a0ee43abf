"""SimPO Pipeline core library, one sub-package per concern.

- `data`: reading, layouts, validation with quarantine, the held-out split, demo data.
- `audit`: chosen/rejected length balance.
- `train`: config, loss, log-probs, trainer, checkpoints, data parallelism, the worker.
- `sweep`: hyper-parameter sweeps: trial plans, winner selection, the GPUs of concurrent trials.
- `eval`: held-out metrics, generation checks, judges, reports.
- `generate`: on-policy pairs from a model's own answers, scored by a judge.
- `gate`: the pure decisions of scheduled retraining: training identity, rerun plan
  (skip, regate or train), paired tests, the champion gate, the model card.

The modules at the top are what every sub-package above uses, so none of them belongs to one:
- `models` (model and tokenizer resolution and loading) and `tiny_model` (the embedded `tiny`
  model): training, evaluation, generation and the audit's tokenizer all load models.
- `rng` (each training's own generator states, seeded sections), `threads` (the CPU
  threads a process runs, from its cores and its model's size) and `building` (one model
  built at a time, as transformers' builds are not thread-safe): process-wide resources
  shared by every stage that runs a model.
- `settings` (the base of every step's settings model, one YAML reader, one error format),
  `errors` (the error types a user sees) and `env` (process defaults).

Pure library: it never imports prefect or mlflow (a test checks this). Public names are
imported lazily so that `import simpo_core` stays fast and torch loads only when needed.

The root also wires the one dependency that points up: resolving the embedded `tiny` model
(`models`) needs its SFT build, which is training (`train.tiny_sft`). `models` never imports
`train`; the root, which sees every layer, hands it the builder.
"""

from importlib import import_module
from pathlib import Path
from typing import Any

from simpo_core import models

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "SimPOConfig": "simpo_core.train.config",
    "LoraSettings": "simpo_core.train.config",
    "SimPOTrainer": "simpo_core.train.trainer",
    "batch_logps": "simpo_core.train.loss",
    "simpo_loss": "simpo_core.train.loss",
    "PreferenceDataset": "simpo_core.data.dataset",
    "SimpoError": "simpo_core.errors",
    "build_tiny_model": "simpo_core.tiny_model",
    "build_tiny_tokenizer": "simpo_core.tiny_model",
    "load_model_and_tokenizer": "simpo_core.models",
    "generate_pairs": "simpo_core.data.synthetic",
}

__all__ = sorted(_EXPORTS)


def _build_embedded_tiny(cache_dir: Path) -> Path:
    from simpo_core.train.tiny_sft import build_embedded_tiny  # torch loads only when `tiny` is built

    return build_embedded_tiny(cache_dir)


models.register_embedded_build(models.TINY, _build_embedded_tiny)


def __getattr__(name: str) -> Any:
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'simpo_core' has no attribute {name!r}")
    return getattr(import_module(module_name), name)
