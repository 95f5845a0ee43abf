"""Named hyperparameter presets: the SimPO paper's per-model settings and the `tiny` model's.

The paper's settings were tuned for 7-9B models on UltraFeedback-style data with an
effective batch of 128 pairs on 8 GPUs, 1 epoch, cosine decay, 10% warmup. Here they are
written for one process: `batch_size × gradient_accumulation_steps = 128`; lower
`batch_size` and raise the accumulation to fit memory, keeping the product.

The `tiny` and `tiny-scratch` presets are ours, one per embedded model (`simpo_core.models`).
`tiny` trains the SFT'd tiny model with the paper's loss alone (no SFT term, no label
smoothing, sigmoid). `tiny-scratch` trains the same 2-layer, 128-wide model from random
weights: it needs an SFT term (it starts knowing no language). Both use a learning rate
hundreds of times larger than a pretrained 7B model's and small batches, so that a few
hundred steps fit in about a CPU minute.

A config names its preset in its `preset` field: the preset's values fill the fields left
unset, so the values a user gives always win. `auto` (the default) stands for the starting
model's own preset where the model is known (the flow's `model.source`, a job file's
`model`): the embedded models have one each, every other model starts from the library
defaults (`none`).
"""

from typing import Any

from simpo_core.errors import ConfigError
from simpo_core.models import EMBEDDED_MODELS

AUTO = "auto"  # the starting model's own preset, else none
NONE = "none"  # the library defaults (the paper's for 7-8B models)
# The margin γ has two spellings; a config that gives either replaces the preset's.
MARGIN_FIELDS = ("gamma", "gamma_beta_ratio")

_PAPER_COMMON: dict[str, Any] = {
    "batch_size": 4,
    "gradient_accumulation_steps": 32,  # effective batch 128, as in the paper
    "num_epochs": 1,
    "lr_scheduler": "cosine",
    "warmup_ratio": 0.1,
    "max_length": 2048,
    "max_prompt_length": 1800,
    "gradient_checkpointing": True,
}

# What both embedded tiny presets share: a constant schedule after a short warmup, short sequences.
_TINY_COMMON: dict[str, Any] = {
    "gradient_accumulation_steps": 1,
    "lr_scheduler": "constant",
    "warmup_ratio": 0.05,
    "weight_decay": 0.0,
    "max_grad_norm": 1.0,
    "max_length": 256,
    "max_prompt_length": 128,
    "logging_steps": 25,
    "eval_steps": 50,
    "save_steps": 100,
}

# name -> (what it is for, fields). β, γ/β and lr as published with the paper's configs.
PRESETS: dict[str, tuple[str, dict[str, Any]]] = {
    "mistral-7b-base": (
        "Mistral-7B SFT base on UltraFeedback",
        {
            **_PAPER_COMMON,
            "beta": 2.0,
            "gamma_beta_ratio": 0.8,
            "lr": 3e-7,
            "max_length": 1024,
            "max_prompt_length": 512,
        },
    ),
    "mistral-7b-instruct": (
        "Mistral-7B-Instruct-v0.2 on on-policy PairRM pairs",
        {**_PAPER_COMMON, "beta": 2.5, "gamma_beta_ratio": 0.12, "lr": 5e-7},
    ),
    "llama3-8b-base": (
        "Llama-3-8B SFT base on UltraFeedback",
        {**_PAPER_COMMON, "beta": 2.0, "gamma_beta_ratio": 0.5, "lr": 6e-7},
    ),
    "llama3-8b-instruct": (
        "Llama-3-8B-Instruct on on-policy PairRM pairs",
        {**_PAPER_COMMON, "beta": 2.5, "gamma_beta_ratio": 0.55, "lr": 1e-6},
    ),
    "llama3-8b-instruct-armorm": (
        "Llama-3-8B-Instruct on on-policy ArmoRM pairs (v0.2)",
        {**_PAPER_COMMON, "beta": 10.0, "gamma_beta_ratio": 0.3, "lr": 1e-6},
    ),
    "gemma2-9b-it": (
        "Gemma-2-9B-it on on-policy ArmoRM pairs",
        {**_PAPER_COMMON, "beta": 10.0, "gamma_beta_ratio": 0.5, "lr": 8e-7},
    ),
    "tiny": (
        "the embedded tiny model after its SFT stage, trained with the SimPO loss alone (CPU, about a minute)",
        {
            **_TINY_COMMON,
            # A large β with a small margin (γ/β = 0.1) saturates the loss once a pair is ranked
            # right, which keeps the SFT'd word spelling intact longer (docs/sft.md, the sweep).
            "beta": 10.0,
            "gamma": 1.0,
            "lr": 3e-4,
            "sft_weight": 0.0,  # SimPO alone: the SFT stage taught the format
            "label_smoothing": 0.0,
            "loss_type": "sigmoid",
            "batch_size": 16,
            "max_steps": 300,
        },
    ),
    "tiny-scratch": (
        "the embedded tiny model from random weights, SimPO plus an SFT term (CPU, about a minute)",
        {
            **_TINY_COMMON,
            "beta": 2.0,
            "gamma": 1.0,
            "lr": 1e-3,
            # From random weights the model knows no language yet: the SFT term teaches it the
            # chosen answers while SimPO separates them (pure SimPO learns far more slowly here).
            "sft_weight": 1.0,
            "batch_size": 8,
            "max_steps": 300,
        },
    ),
}


# What `preset:` accepts: the named presets and the two words above.
PRESET_CHOICES = (AUTO, NONE, *PRESETS)


def check_preset_name(name: str) -> None:
    """Raises ConfigError when no preset has this name (the message lists the known ones)."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}")


def preset_values(name: str) -> dict[str, Any]:
    """The field values of a preset (a copy), for `SimPOConfig.preset(name, **overrides)`.

    Raises:
        ConfigError: no preset has this name (the message lists the known ones).
    """
    check_preset_name(name)
    return dict(PRESETS[name][1])


def with_preset_values(values: dict[str, Any]) -> dict[str, Any]:
    """`values` over the values of the preset they name (`values["preset"]`), the given ones winning.

    `auto` and `none` add nothing (a config alone does not know its model: `with_model_preset`
    resolves `auto` first), and an unknown name is left for the field's own check to report. A
    given `gamma` or `gamma_beta_ratio` replaces the preset's margin, whichever way it spells it.
    """
    name = values.get("preset")
    if not isinstance(name, str) or name not in PRESETS:
        return values
    preset = preset_values(name)
    if any(field in values for field in MARGIN_FIELDS):
        for field in MARGIN_FIELDS:
            preset.pop(field, None)
    return {**preset, **values}


def with_model_preset(values: dict[str, Any], model_source: str) -> dict[str, Any]:
    """Training `values` whose `preset: auto` (also when absent) is resolved for `model_source`:
    the embedded models' own preset (`tiny`, `tiny-scratch`), `none` for every other model."""
    name = values.get("preset", AUTO)
    if name == AUTO:
        name = model_source if model_source in EMBEDDED_MODELS and model_source in PRESETS else NONE
    return {**values, "preset": name}
