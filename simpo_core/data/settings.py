"""Settings of the data steps: validation and the held-out split."""

from typing import Literal

from pydantic import Field

from simpo_core.settings import StepSettings

Layout = Literal["flat", "conversational", "sharegpt", "hh-rlhf", "openai"]  # as simpo_core.data.layouts.LAYOUTS


class ValidateSettings(StepSettings):
    """How a source is read and checked (`validate_source`)."""

    format: Layout | None = Field(None, description="force an input layout; detected automatically when unset")
    max_invalid_fraction: float = Field(
        0.05, ge=0, le=1, description="fail when more than this share of rows is quarantined"
    )
    max_prompt_tokens: int | None = Field(
        None, gt=0, description="quarantine prompts longer than this many tokens (chat template applied)"
    )
    max_response_tokens: int | None = Field(
        None, gt=0, description="quarantine pairs whose chosen or rejected answer is longer than this many tokens"
    )


class SplitSettings(StepSettings):
    """Which pairs are held out for evaluation (`write_split`)."""

    heldout_fraction: float = Field(0.1, gt=0, lt=1, description="share of prompts held out for evaluation")
    split_salt: str = Field("simpo", min_length=1, description="salt of the prompt hash that assigns splits")
