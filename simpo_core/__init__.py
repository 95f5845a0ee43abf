"""SimPO Pipeline core library: data, audit, loss, training and evaluation.

Pure library: it never imports prefect or mlflow (a test checks this). Public names are
imported lazily so that `import simpo_core` stays fast and torch loads only when needed.
"""

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "SimPOConfig": "simpo_core.config",
    "LoraSettings": "simpo_core.config",
    "SimPOTrainer": "simpo_core.trainer",
    "batch_logps": "simpo_core.loss",
    "simpo_loss": "simpo_core.loss",
    "PreferenceDataset": "simpo_core.dataset",
    "SimpoError": "simpo_core.errors",
    "build_tiny_model": "simpo_core.tiny",
    "build_tiny_tokenizer": "simpo_core.tiny",
    "load_model_and_tokenizer": "simpo_core.models",
    "generate_pairs": "simpo_core.synthetic",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'simpo_core' has no attribute {name!r}")
    return getattr(import_module(module_name), name)
