"""Settings of the evaluation step: every evaluation default lives here, once.

`EvalOptions` is what a user chooses about evaluation (the flow's `eval` group, the
`simpo evaluate` flags); `EvalSettings` adds what must match training (β, γ, the token
limits, the seed), whose defaults are the training config's, and how the models load (the
device and `trust_remote_code`, the flow's `model` group).
"""

from typing import Literal

from pydantic import Field, model_validator

from simpo_core.models import DEVICE_PATTERN
from simpo_core.settings import StepSettings
from simpo_core.train.config import SimPOConfig

_TRAINING = SimPOConfig.model_fields  # β, γ and the token limits default to training's


class EvalOptions(StepSettings):
    """How the held-out evaluation runs and who judges the generated answers."""

    judge: Literal["synthetic", "reward-model", "none"] = Field("synthetic", description="who scores generated answers")
    reward_model_path: str | None = Field(
        None, description="local sequence-classification model folder for judge=reward-model"
    )
    generation_samples: int = Field(
        16, ge=0, description="held-out prompts answered for the generation check (0 skips it)"
    )
    max_new_tokens: int = Field(48, gt=0, le=4096, description="bound on generated tokens per answer")
    batch_size: int = Field(8, gt=0, description="pairs per forward pass during evaluation")

    @model_validator(mode="after")
    def reward_model_needs_path(self) -> "EvalOptions":
        if self.judge == "reward-model" and not self.reward_model_path:
            raise ValueError("judge 'reward-model' needs reward_model_path (a local model folder)")
        return self


class EvalSettings(EvalOptions):
    """`EvalOptions` plus the SimPO settings the model was trained with."""

    beta: float = Field(_TRAINING["beta"].default, gt=0, description="SimPO β used in training (reward scale)")
    gamma: float = Field(_TRAINING["gamma"].default, ge=0, description="SimPO γ used in training (target margin)")
    max_length: int = Field(_TRAINING["max_length"].default, gt=0, description="prompt + response tokens kept")
    max_prompt_length: int = Field(_TRAINING["max_prompt_length"].default, gt=0, description="prompt tokens kept")
    seed: int = Field(0, ge=0, description="seed of the prompt sample, sampling and bootstrap")
    device: str = Field(
        "auto", pattern=DEVICE_PATTERN, description="where the models and the reward model run: auto, cpu, cuda, cuda:N"
    )
    trust_remote_code: bool = Field(False, description="run code shipped with the evaluated models (off by default)")

    @classmethod
    def for_training(
        cls, options: EvalOptions, config: SimPOConfig, *, device: str = "auto", trust_remote_code: bool = False
    ) -> "EvalSettings":
        """The evaluation of a model trained with `config`: its β, γ, token limits and seed,
        loaded on `device` with the model group's `trust_remote_code`."""
        return cls(
            **options.model_dump(),
            device=device,
            trust_remote_code=trust_remote_code,
            beta=config.beta,
            gamma=config.gamma,  # resolved from gamma_beta_ratio when that was given
            max_length=config.max_length,
            max_prompt_length=config.max_prompt_length,
            seed=config.seed,
        )
