"""SimPO training configuration: one settings model, every field constrained and described.

A typo fails at once (`extra="forbid"`, as every `StepSettings`), and field names stay
compatible with the SimPO usage people already copy (`SimPOConfig(beta=2.0, gamma=1.0,
lr=1e-6, batch_size=4)`). Named presets (the paper's per-model settings and the embedded
models') live in `simpo_core.train.presets`; a config names its own in `preset`.
"""

import math
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from simpo_core.settings import StepSettings, read_yaml_mapping
from simpo_core.train.presets import PRESET_CHOICES, check_preset_name, with_model_preset, with_preset_values

# Training precision policies and saved-model dtypes (see `simpo_core.train.precision`).
Precision = Literal["auto", "fp32", "bf16-mixed", "bf16-pure"]
SaveDtype = Literal["checkpoint", "float32", "bfloat16", "float16"]
Strategy = Literal["ddp", "fsdp"]
PresetName = Literal[PRESET_CHOICES]  # auto, none, or a preset of `simpo_core.train.presets.PRESETS`
# Fields that decide where and on how many processes (and threads) training runs, never what a step computes.
LAYOUT_FIELDS = ("num_processes", "nnodes", "strategy", "fsdp_cpu_offload", "num_threads")


class LoraSettings(BaseModel):
    """Low-rank adapters (peft): train small matrices beside frozen base weights."""

    model_config = ConfigDict(extra="forbid")

    r: int = Field(16, ge=1, le=1024, description="Rank of the adapter matrices.")
    alpha: float = Field(32.0, gt=0, description="Scaling numerator: the adapter output is multiplied by alpha / r.")
    dropout: float = Field(0.05, ge=0, lt=1, description="Dropout on the adapter input while training.")
    target_modules: list[str] | str = Field(
        "all-linear",
        description="Module names to adapt (e.g. [q_proj, v_proj]) or 'all-linear' for every linear layer but the output head.",
    )
    merge_on_save: bool = Field(
        True,
        description="save_model writes a merged full model (loadable without peft) and the adapter in its 'adapter' subfolder; "
        "when False it writes the adapter only.",
    )


# Held-out metrics early stopping can watch (the trainer's eval_-prefixed TRL names).
EvalMetric = Literal[
    "eval_loss",
    "eval_rewards/chosen",
    "eval_rewards/rejected",
    "eval_rewards/margins",
    "eval_rewards/accuracies",
    "eval_logps/chosen",
    "eval_logps/rejected",
]


class EarlyStopping(BaseModel):
    """Stop training when a held-out metric has not improved for `patience` evaluations."""

    model_config = ConfigDict(extra="forbid")

    metric: EvalMetric = Field("eval_rewards/accuracies", description="Held-out metric to watch (eval_-prefixed).")
    mode: Literal["max", "min"] = Field("max", description="max: larger is better (accuracy); min: smaller (loss).")
    patience: int = Field(3, ge=1, description="Evaluations without improvement before training stops.")
    min_delta: float = Field(
        0.0, ge=0, description="An evaluation improves only when it beats the best value so far by more than this."
    )


class SimPOConfig(StepSettings):
    """Hyperparameters of a SimPO run. Defaults are the paper's for 7-8B models."""

    preset: PresetName = Field(
        "auto",
        description="Named preset whose values fill the fields left unset (given fields win): auto is the "
        "starting model's own preset (the embedded tiny and tiny-scratch have one; any other model: none), "
        "none the library defaults, or a preset of docs/training.md (e.g. llama3-8b-instruct).",
    )

    # --- the SimPO objective -------------------------------------------------------------
    beta: float = Field(2.0, gt=0, description="Reward scale β: reward = β × mean token log-prob of the response.")
    gamma: float = Field(1.0, ge=0, description="Target reward margin γ, absolute (the paper's and the seed's gamma).")
    gamma_beta_ratio: float | None = Field(
        None, ge=0, description="Alternative to gamma: γ = β × ratio. Do not set gamma at the same time."
    )
    loss_type: Literal["sigmoid", "hinge"] = Field(
        "sigmoid", description="sigmoid: −logσ(z) (the paper's); hinge: relu(1 − z)."
    )
    label_smoothing: float = Field(
        0.0, ge=0, lt=0.5, description="ε: assumed probability that a preference label is flipped (sigmoid loss only)."
    )
    sft_weight: float = Field(
        0.0, ge=0, description="Weight of an added SFT term: token-mean NLL of the chosen responses."
    )
    length_normalize: bool = Field(
        True,
        description="Reward = β × mean token log-prob (SimPO). False uses the summed log-prob (the paper's "
        "'w/o LN' ablation); the SFT term and the metric names stay the same.",
    )

    # --- optimisation --------------------------------------------------------------------
    lr: float = Field(1e-6, gt=0, description="Peak learning rate of AdamW (1e-6 suits 7-8B models).")
    batch_size: int = Field(4, ge=1, description="Pairs per micro-batch (each pair is two sequences in one forward).")
    gradient_accumulation_steps: int = Field(1, ge=1, description="Micro-batches per optimizer step.")
    num_epochs: float = Field(
        1.0, gt=0, description="Passes over the training pairs (fractions allowed); ignored when max_steps >= 0."
    )
    max_steps: int = Field(
        -1, ge=-1, description="Optimizer steps to run; -1 derives them from num_epochs, 0 trains nothing."
    )
    warmup_ratio: float = Field(
        0.1, ge=0, le=1, description="Fraction of the steps over which the learning rate rises linearly from 0."
    )
    lr_scheduler: Literal["linear", "cosine", "constant"] = Field(
        "cosine", description="Learning-rate decay after warmup."
    )
    max_grad_norm: float | None = Field(
        1.0, gt=0, description="Clip the global gradient norm to this value; null disables clipping."
    )
    weight_decay: float = Field(
        0.0, ge=0, description="AdamW weight decay (matrices only; biases and norms never decay)."
    )
    seed: int = Field(42, ge=0, description="Seed for data order, dropout and adapter initialisation.")

    # --- sequences -----------------------------------------------------------------------
    max_length: int = Field(512, ge=2, description="Maximum tokens of prompt + response; longer pairs are truncated.")
    max_prompt_length: int = Field(
        256, ge=1, description="Prompt tokens kept (the end) when a pair is too long; must be < max_length."
    )

    # --- output, checkpoints, logging ----------------------------------------------------
    output_dir: Path = Field(Path("outputs/simpo"), description="Folder for checkpoints and the final model.")
    save_steps: int = Field(
        100, ge=0, description="Write a resumable checkpoint every this many steps; 0 disables checkpoints."
    )
    save_total_limit: int | None = Field(
        2, ge=1, description="Keep at most this many checkpoints (oldest removed); null keeps all."
    )
    logging_steps: int = Field(10, ge=1, description="Log and report training metrics every this many steps.")
    eval_steps: int = Field(
        0, ge=0, description="Evaluate on eval_dataset every this many steps; 0 evaluates at the end only."
    )
    eval_batch_size: int = Field(16, ge=1, description="Pairs per batch when evaluating.")
    early_stopping: EarlyStopping | None = Field(
        None, description="Stop when a held-out metric plateaus (needs eval_steps > 0); null trains every step."
    )
    monitor_window: int | None = Field(
        3,
        ge=2,
        description="Evaluations the margin monitor looks back over: it warns when chosen and rejected log-probs "
        "both fall while the margin grows (likelihood displacement), or when the margin stalls; null turns it off.",
    )

    # --- model handling ------------------------------------------------------------------
    lora: LoraSettings | None = Field(None, description="LoRA adapters; null fine-tunes every weight.")
    gradient_checkpointing: bool = Field(
        False, description="Recompute activations in the backward pass: less memory, ~30% slower."
    )
    precision: Precision = Field(
        "auto",
        description="fp32: float32 weights and compute; bf16-mixed: float32 master weights and AdamW state, "
        "bfloat16 autocast (CUDA only); bf16-pure: bfloat16 weights and optimizer state (saves memory, but "
        "loses most updates at small learning rates); auto: bf16-mixed on a bf16-capable GPU, else fp32.",
    )
    save_dtype: SaveDtype = Field(
        "checkpoint",
        description="dtype of the saved model: checkpoint (the starting model's own), float32, bfloat16 or float16.",
    )
    num_processes: int = Field(
        1,
        ge=1,
        description="Processes to train with (torchrun --nproc_per_node); batch_size × gradient_accumulation_steps "
        "stays the pairs per step, split across them. The trainer itself follows the torchrun environment.",
    )
    nnodes: int = Field(
        1,
        ge=1,
        description="Machines to train on (torchrun --nnodes), each running num_processes processes. Above 1, set "
        "PET_RDZV_ENDPOINT=host:port (a reachable port on the first machine) on every machine and start the same "
        "command on each; output_dir must be storage they all share.",
    )
    strategy: Strategy = Field(
        "ddp",
        description="How several processes split the work. ddp: every process holds the whole model; "
        "DistributedDataParallel reduces gradients in buckets during the backward. fsdp: FSDP2 shards parameters, "
        "gradients and AdamW state across the processes (per decoder layer), for models that do not fit one "
        "device; checkpoints are sharded (torch.distributed.checkpoint) and resume on any process count. "
        "One process trains the same either way.",
    )
    fsdp_cpu_offload: bool = Field(
        False,
        description="Under fsdp on GPUs: keep the sharded parameters, gradients and optimizer state in CPU memory "
        "(slower; for models whose shards do not fit GPU memory).",
    )
    num_threads: int | None = Field(
        None,
        ge=1,
        le=1024,
        description="CPU threads per process (torch intra-op). null chooses: the cores this process may use "
        "(its CPU affinity, shared among torchrun's processes on the machine, capped by OMP_NUM_THREADS when set), "
        "and one thread per 4 M model parameters at most, so small models and concurrent jobs do not oversubscribe "
        "the cores (docs/performance.md, Threads).",
    )
    packed_attention: Literal["auto", "flex", "loop"] = Field(
        "auto",
        description="How packed batches run attention: auto (FlexAttention on CUDA, falling back to the exact "
        "per-sequence loop for a call where it fails, counted), flex (FlexAttention; a failure is an error) or "
        "loop (the per-sequence loop).",
    )

    @model_validator(mode="before")
    @classmethod
    def _fill_from_preset(cls, values: Any) -> Any:
        """The named preset's values under the given ones (on assignment every field is given)."""
        return with_preset_values(values) if isinstance(values, dict) else values

    @model_validator(mode="after")
    def _check_consistency(self) -> "SimPOConfig":
        if self.max_prompt_length >= self.max_length:
            raise ValueError(
                f"max_prompt_length ({self.max_prompt_length}) must be smaller than max_length "
                f"({self.max_length}) so that every response keeps at least one token"
            )
        if self.early_stopping is not None and self.eval_steps == 0:
            raise ValueError("early_stopping watches periodic evaluations; set eval_steps > 0 or early_stopping: null")
        if self.gamma_beta_ratio is not None:
            implied = self.beta * self.gamma_beta_ratio
            if "gamma" in self.model_fields_set and not math.isclose(self.gamma, implied, rel_tol=1e-9, abs_tol=1e-12):
                raise ValueError(
                    f"set either gamma ({self.gamma}) or gamma_beta_ratio ({self.gamma_beta_ratio}), not both: "
                    f"the ratio implies gamma = beta × ratio = {implied}"
                )
            # Store the effective margin so every reader of `gamma` sees the same number.
            object.__setattr__(self, "gamma", implied)
        # Imported here: the loss module loads torch, and importing this module stays light.
        from simpo_core.train.loss import check_loss_settings

        check_loss_settings(self.beta, self.gamma, self.label_smoothing, self.loss_type, self.sft_weight)
        return self

    @property
    def effective_batch_size(self) -> int:
        """Pairs per optimizer step (one process)."""
        return self.batch_size * self.gradient_accumulation_steps

    @classmethod
    def from_yaml(cls, path: str | Path) -> "SimPOConfig":
        """Read a YAML file whose top level holds SimPOConfig fields.

        Raises:
            ConfigError: the file is missing, not a mapping, or holds an unknown or bad value.
        """
        return cls.from_dict(read_yaml_mapping(path), source=str(path))

    @classmethod
    def for_model(cls, values: dict[str, Any], model_source: str, source: str = "config") -> "SimPOConfig":
        """A config from `values` for training `model_source`: its `preset: auto` (the default) is
        that model's own preset, as the flow's `train` group and a job file's `train` group read it.

        Raises:
            ConfigError: an unknown or bad value (one line per key).
        """
        return cls.from_dict(with_model_preset(values, model_source), source)

    @classmethod
    def for_tiny(cls, **overrides: Any) -> "SimPOConfig":
        """Hyperparameters that train the embedded `tiny` model (its preset, a large lr)."""
        return cls.from_dict({"preset": "tiny", **overrides}, source="tiny preset")


def _config_of_preset(cls: type[SimPOConfig], name: str, **overrides: Any) -> SimPOConfig:
    """A named preset (see `simpo_core.train.presets.PRESETS`) with field overrides.

    Raises:
        ConfigError: no preset has this name (the message lists them), or an override is bad.
    """
    check_preset_name(name)
    return cls.from_dict({"preset": name, **overrides}, source=f"preset {name!r}")


# `SimPOConfig.preset(name, **overrides)` (the public API people copy) and `config.preset` (the
# field) share a name. The method is attached after the class is built, so pydantic reads the
# field alone; on an instance the field's value wins (a class method is a non-data descriptor).
SimPOConfig.preset = classmethod(_config_of_preset)  # type: ignore[assignment,method-assign]
