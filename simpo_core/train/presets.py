"""Named hyperparameter presets: the SimPO paper's per-model settings and the `tiny` model's.

The paper's settings were tuned for 7-9B models on UltraFeedback-style data with an
effective batch of 128 pairs on 8 GPUs, 1 epoch, cosine decay, 10% warmup. Here they are
written for one process: `batch_size × gradient_accumulation_steps = 128`; lower
`batch_size` and raise the accumulation to fit memory, keeping the product.

The `tiny` preset is ours: a 2-layer, 128-wide model trained from random weights needs a
learning rate about a thousand times larger than a pretrained 7B model, a constant
schedule after a short warmup, an SFT term (it starts knowing no language), and small
batches so that a few hundred steps fit in a couple of CPU minutes.
"""

from typing import Any

from simpo_core.errors import ConfigError

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
        "the embedded tiny model trained from scratch on the synthetic data (CPU, minutes)",
        {
            "beta": 2.0,
            "gamma": 1.0,
            "lr": 1e-3,
            # From random weights the model knows no language yet: the SFT term teaches it the
            # chosen answers while SimPO separates them (pure SimPO learns far more slowly here).
            "sft_weight": 1.0,
            "batch_size": 8,
            "gradient_accumulation_steps": 1,
            "max_steps": 300,
            "lr_scheduler": "constant",
            "warmup_ratio": 0.05,
            "weight_decay": 0.0,
            "max_grad_norm": 1.0,
            "max_length": 256,
            "max_prompt_length": 128,
            "logging_steps": 25,
            "eval_steps": 50,
            "save_steps": 100,
        },
    ),
}


def preset_values(name: str) -> dict[str, Any]:
    """The field values of a preset (a copy), for `SimPOConfig.preset(name, **overrides)`.

    Raises:
        ConfigError: no preset has this name (the message lists the known ones).
    """
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}")
    return dict(PRESETS[name][1])
