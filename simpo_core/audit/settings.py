"""Settings of the length-balance audit (a light module: the CLI reads it to build its flags)."""

from typing import Literal

from pydantic import Field, model_validator

from simpo_core.settings import StepSettings


class AuditSettings(StepSettings):
    """When the audit flags length bias or truncation, and what it does then."""

    threshold: float = Field(
        0.65,
        gt=0.5,
        le=1,
        description="flag when length alone predicts the label this often, in either direction (longer or shorter wins)",
    )
    policy: Literal["warn", "fail", "rebalance"] = Field("warn", description="what to do when flagged")
    tolerance: float = Field(0.05, ge=0, lt=0.5, description="rebalance target: chosen-longer share within 0.5 +- this")
    seed: int = Field(0, ge=0, description="which pairs rebalancing drops (same seed and data, same drops)")
    max_length: int | None = Field(
        None,
        ge=2,
        description="training limit on prompt + answer tokens that the truncation count checks; unset: "
        "train.max_length in the flow, SimPOConfig's default in `simpo audit`",
    )
    max_prompt_length: int | None = Field(
        None,
        ge=1,
        description="training limit on prompt tokens that the truncation count checks; unset: "
        "train.max_prompt_length in the flow, SimPOConfig's default in `simpo audit`",
    )
    max_truncated_fraction: float = Field(
        0.05,
        ge=0,
        le=1,
        description="warn (policy fail: fail) when training would cut more than this share of pairs",
    )

    @model_validator(mode="after")
    def prompt_limit_below_total(self) -> "AuditSettings":
        if None not in (self.max_length, self.max_prompt_length) and self.max_prompt_length >= self.max_length:
            raise ValueError(
                f"the audit's max_prompt_length ({self.max_prompt_length}) must be smaller than its max_length "
                f"({self.max_length}), as in training"
            )
        return self
