"""The SFT stage's settings and job: what `simpo sft` reads, without torch.

`SFTSettings` holds every default of the stage (`sft.sft_train`); `SFTJob` is one run from a
file to a saved model. They live apart from the loop so that the command line builds its
flags (`simpo --help`) without importing torch.
"""

from pydantic import Field, model_validator

from simpo_core.settings import StepSettings
from simpo_core.train.schedule import Scheduler


class SFTSettings(StepSettings):
    """Hyperparameters of the SFT stage. Defaults suit the embedded `tiny` model on CPU."""

    lr: float = Field(3e-3, gt=0, description="Peak AdamW learning rate (3e-3 suits the tiny model; ~1e-5 a 7B one).")
    max_steps: int = Field(300, ge=0, description="Optimizer steps; 0 trains nothing.")
    batch_size: int = Field(8, ge=1, description="Prompt/response rows per optimizer step.")
    warmup_ratio: float = Field(0.1, ge=0, le=1, description="Fraction of the steps with a linear warmup from 0.")
    lr_scheduler: Scheduler = Field("cosine", description="Decay after warmup.")
    max_grad_norm: float | None = Field(1.0, gt=0, description="Clip the gradient norm to this; null: no clipping.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay on matrices.")
    seed: int = Field(0, ge=0, description="Seed of the data order.")
    max_length: int = Field(256, ge=2, description="Prompt + response tokens kept; longer rows are truncated.")
    max_prompt_length: int = Field(128, ge=1, description="Prompt tokens kept (the end) when a row is too long.")
    logging_steps: int = Field(25, ge=1, description="Log the loss every this many steps.")

    @model_validator(mode="after")
    def _prompt_fits(self) -> "SFTSettings":
        if self.max_prompt_length >= self.max_length:
            raise ValueError(
                f"max_prompt_length ({self.max_prompt_length}) must be smaller than max_length ({self.max_length}) "
                "so that every answer keeps at least one token"
            )
        return self


class SFTJob(StepSettings):
    """One SFT run from a file to a saved model: what `simpo sft` runs."""

    data: str = Field(
        min_length=1,
        description="JSONL, JSON, Parquet or CSV file of prompt/response (or prompt/completion, or messages) "
        "rows, or of preference pairs, whose chosen answers are then the targets",
    )
    output_dir: str = Field(min_length=1, description="folder that receives the SFT'd model (safetensors)")
    model: str = Field("tiny-scratch", min_length=1, description="starting model: 'tiny-scratch', a folder or a hub id")
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:[0-9]+)?)$", description="auto, cpu, cuda or cuda:N")
    trust_remote_code: bool = Field(False, description="run code shipped with the model (off by default)")
    sft: SFTSettings = Field(default_factory=SFTSettings, description="SFT hyperparameters")
