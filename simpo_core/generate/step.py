"""`generate_step`: the one function `simpo generate` and the flow's `generate-pairs` task call."""

from collections.abc import Callable
from pathlib import Path
from typing import Any

from simpo_core.generate.backend import TransformersBackend
from simpo_core.generate.pairs import GenerationResult, generate_pairs_on_policy
from simpo_core.generate.prompts import load_prompts
from simpo_core.generate.settings import GenerateSettings

PAIRS_FILE = "pairs.jsonl"


def generate_step(
    prompts_source: str,
    generator_source: str,
    settings: GenerateSettings,
    out_dir: Path,
    *,
    device: str = "auto",
    trust_remote_code: bool = False,
    generator_label: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    pairs_name: str = PAIRS_FILE,
) -> GenerationResult:
    """Validate the prompts, sample answers from the generator, judge them, write the pairs.

    Args:
        prompts_source: see `simpo_core.generate.prompts`.
        generator_source: the model that answers (`tiny`, a folder, a hub id).
        settings: sampling, judge and pair settings.
        out_dir: receives the pairs (`pairs_name`, `pairs.jsonl` by default) and the prompts'
            quarantine file.
        device, trust_remote_code: how the generator loads.
        generator_label: how the provenance names the generator (e.g. `models:/NAME@champion`).
        progress: called with (samples done, samples) after each round of answers.

    Raises:
        ConfigError: a model or judge that cannot load.
        DataError: unreadable prompts, or no prompt gave a pair.
    """
    from simpo_core.gate.identity import model_identity
    from simpo_core.models import load_model_and_tokenizer

    model, tokenizer = load_model_and_tokenizer(generator_source, trust_remote_code=trust_remote_code, device=device)
    prompts = load_prompts(prompts_source, tokenizer, settings.max_prompt_length, Path(out_dir))
    judge = build_generation_judge(settings, device)
    provenance = {
        "generator": {"source": generator_label or generator_source, "identity": model_identity(generator_source)},
        "judge": judge_identity(settings),
    }
    backend = TransformersBackend(model, tokenizer, settings, progress)
    return generate_pairs_on_policy(prompts, backend, judge, settings, Path(out_dir) / pairs_name, provenance)


def build_generation_judge(settings: GenerateSettings, device: str = "auto") -> Any:
    """The judge's score function (`simpo_core.eval.judges`), with the reward model's options.

    Raises:
        ConfigError: an unknown judge, or a reward model that cannot load.
    """
    from simpo_core.errors import ConfigError
    from simpo_core.eval.judges import build_judge

    if settings.judge == "none":
        raise ConfigError(
            "generation needs a judge to pick chosen and rejected: set judge to synthetic or reward-model"
        )
    if settings.judge != "reward-model":
        return build_judge(settings.judge)
    return build_judge(
        "reward-model",
        reward_model_path=settings.judge_model,
        batch_size=settings.batch_size,
        max_length=settings.max_prompt_length + settings.max_new_tokens,
        device=device,
        trust_remote_code=settings.judge_trust_remote_code,
    )


def judge_identity(settings: GenerateSettings) -> dict[str, str]:
    """The judge's name and what it is: the content of a reward model's folder, else the name."""
    if settings.judge == "reward-model" and settings.judge_model and Path(settings.judge_model).is_dir():
        from simpo_core.gate.identity import folder_digest

        return {"name": settings.judge, "identity": "folder:" + folder_digest(Path(settings.judge_model))}
    return {"name": settings.judge, "identity": settings.judge}
