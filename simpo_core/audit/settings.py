"""Settings of the length-balance audit (a light module: the CLI reads it to build its flags)."""

from typing import Literal

from pydantic import Field

from simpo_core.settings import StepSettings


class AuditSettings(StepSettings):
    """When the audit flags length bias and what it does then."""

    threshold: float = Field(
        0.65,
        gt=0.5,
        le=1,
        description="flag when length alone predicts the label this often, in either direction (longer or shorter wins)",
    )
    policy: Literal["warn", "fail", "rebalance"] = Field("warn", description="what to do when flagged")
    tolerance: float = Field(0.05, ge=0, lt=0.5, description="rebalance target: chosen-longer share within 0.5 +- this")
    seed: int = Field(0, ge=0, description="which pairs rebalancing drops (same seed and data, same drops)")
