"""How answers are sampled: one small interface, so a faster engine (vLLM on GPU) can be added."""

from typing import Any, Protocol

from simpo_core.data.schema import Message
from simpo_core.eval.generation import generate_responses
from simpo_core.generate.settings import GenerateSettings


class AnswerBackend(Protocol):
    """Samples `samples` answers for each prompt; answer i of every prompt uses seed `seed + i`."""

    def answer(self, prompts: list[list[Message]], samples: int, seed: int) -> list[list[str]]: ...


class TransformersBackend:
    """`model.generate` (KV cache, batched with left padding, on the model's device), rendering
    prompts exactly as training and serving do."""

    def __init__(self, model: Any, tokenizer: Any, settings: GenerateSettings, progress: Any = None) -> None:
        self.model, self.tokenizer, self.settings, self.progress = model, tokenizer, settings, progress

    def answer(self, prompts: list[list[Message]], samples: int, seed: int) -> list[list[str]]:
        """Returns one list of `samples` answers per prompt, in prompt order."""
        settings = self.settings
        rounds = []
        for index in range(samples):
            rounds.append(
                generate_responses(
                    self.model,
                    self.tokenizer,
                    prompts,
                    do_sample=True,
                    seed=seed + index,
                    max_new_tokens=settings.max_new_tokens,
                    batch_size=settings.batch_size,
                    max_prompt_length=settings.max_prompt_length,
                    temperature=settings.temperature,
                    top_p=settings.top_p,
                )
            )
            if self.progress is not None:
                self.progress(index + 1, samples)
        return [[round_[position].text for round_ in rounds] for position in range(len(prompts))]
