"""Settings of the on-policy generation step: every default lives here, once."""

from pydantic import Field

from simpo_core.settings import StepSettings

GENERATION_JUDGES = ("synthetic", "reward-model")


class GenerateSettings(StepSettings):
    """How answers are sampled and judged, and which pairs are kept (the SimPO authors' recipe)."""

    samples: int = Field(5, ge=2, le=64, description="answers sampled per prompt; best is chosen, worst rejected")
    temperature: float = Field(0.8, gt=0, le=5, description="sampling temperature")
    top_p: float = Field(0.95, gt=0, le=1, description="nucleus sampling mass")
    max_new_tokens: int = Field(64, gt=0, le=4096, description="bound on generated tokens per answer")
    batch_size: int = Field(16, gt=0, description="prompts per generate call")
    seed: int = Field(0, ge=0, description="sample i of every prompt draws with seed + i")
    judge: str = Field("synthetic", min_length=1, description="synthetic, reward-model, or a registered judge")
    judge_model: str | None = Field(None, description="local reward-model folder for judge=reward-model")
    judge_trust_remote_code: bool = Field(
        False, description="run code shipped with the reward model (ArmoRM-style models need it; off by default)"
    )
    min_score_gap: float = Field(
        0.0, ge=0, description="drop a prompt whose best and worst answers' scores differ by no more than this"
    )
    max_prompt_length: int = Field(128, gt=0, description="prompt tokens allowed (the training's max_prompt_length)")
