"""The generation step: on-policy preference pairs from the model's own answers.

For each prompt, `samples` answers are sampled from the generator and every answer is
scored by the judge; the best answer becomes `chosen` and the worst `rejected` (the SimPO
authors' on-policy recipe). A prompt gives no pair, counted by reason, when the judge could
not score two of its answers (`unscored`), when all its answers are the same text
(`identical_answers`), or when the best and worst scores differ by no more than
`min_score_gap` (`score_gap_too_small`). The output is an ordinary preference file in the
flat layout, plus the two scores and the provenance of every pair.
"""

import json
import logging
import statistics
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from simpo_core.data.schema import Message
from simpo_core.errors import DataError
from simpo_core.generate.backend import AnswerBackend
from simpo_core.generate.prompts import PromptSet
from simpo_core.generate.settings import GenerateSettings

logger = logging.getLogger(__name__)

SAMPLING_FIELDS = ("samples", "temperature", "top_p", "max_new_tokens", "seed", "min_score_gap")


@dataclass
class GenerationResult:
    """What the step made: the pairs file, and what every prompt became."""

    pairs_path: Path
    prompts: dict[str, Any]  # `PromptSet.summary()`
    pairs: int
    dropped: dict[str, int]  # prompts that gave no pair, by reason (quarantined prompts included)
    generator: dict[str, str]  # `source`, `identity`
    judge: dict[str, str]  # `name`, `identity`
    sampling: dict[str, Any]
    score_gaps: dict[str, float]  # `mean`, `min`, `max` of chosen_score - rejected_score

    def summary(self) -> dict[str, Any]:
        """The run summary's `generation` block."""
        return {
            "prompts": self.prompts["total"],
            "pairs": self.pairs,
            "dropped": self.dropped,
            "generator": self.generator,
            "judge": self.judge,
            "pairs_path": str(self.pairs_path),
            "sampling": self.sampling,
            "score_gaps": self.score_gaps,
            "prompt_validation": self.prompts,
        }


def choose_pair(answers: list[str], scores: list[float | None], min_score_gap: float) -> tuple[int, int] | str:
    """`(chosen, rejected)` indices into `answers`, or the reason the prompt gives no pair.

    The best score wins (the first of equal answers), the worst loses (the last of equal ones).
    """
    scored = [index for index, score in enumerate(scores) if score is not None]
    if len(scored) < 2:
        return "unscored"
    if len({answers[index] for index in scored}) == 1:
        return "identical_answers"
    best = max(scored, key=lambda index: (scores[index], -index))
    worst = min(scored, key=lambda index: (scores[index], -index))
    if scores[best] - scores[worst] <= min_score_gap or answers[best] == answers[worst]:
        return "score_gap_too_small"
    return best, worst


def generate_pairs_on_policy(
    prompts: PromptSet,
    backend: AnswerBackend,
    judge: Any,
    settings: GenerateSettings,
    out_path: Path,
    provenance: dict[str, dict[str, str]],
) -> GenerationResult:
    """Sample, score and pair: write the preference file `out_path` (JSONL, flat layout).

    Args:
        prompts: the validated prompts (`load_prompts`).
        backend: samples the answers (`TransformersBackend` over the generator model).
        judge: `(prompts, answers) -> scores` (`simpo_core.eval.judges.build_judge`).
        settings: samples, sampling and the score gap a pair needs.
        out_path: the pairs file to write.
        provenance: `{"generator": {"source", "identity"}, "judge": {"name", "identity"}}`,
            written on every pair.

    Raises:
        DataError: no prompt gave a pair (the reasons are counted in the message).
    """
    answers = backend.answer(prompts.prompts, settings.samples, settings.seed)
    flat_prompts = [prompt for prompt in prompts.prompts for _ in range(settings.samples)]
    flat_scores = judge(flat_prompts, [text for group in answers for text in group])
    sampling = settings.model_dump(include=set(SAMPLING_FIELDS))
    dropped: Counter = Counter(prompts.reasons)
    gaps: list[float] = []
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with out_path.open("w", encoding="utf-8") as handle:
        for index, (prompt, group) in enumerate(zip(prompts.prompts, answers)):
            scores = flat_scores[index * settings.samples : (index + 1) * settings.samples]
            picked = choose_pair(group, scores, settings.min_score_gap)
            if isinstance(picked, str):
                dropped[picked] += 1
                continue
            gaps.append(scores[picked[0]] - scores[picked[1]])
            handle.write(json.dumps(_pair(prompt, group, scores, picked, provenance, sampling), ensure_ascii=False))
            handle.write("\n")
    if not gaps:
        raise DataError(
            f"no prompt of {prompts.source} gave a pair ({dict(dropped)}): sample more answers (samples), "
            "raise temperature, or lower min_score_gap"
        )
    logger.info("generated %d pairs from %d prompts (dropped: %s)", len(gaps), prompts.total, dict(dropped))
    spread = {"mean": statistics.fmean(gaps), "min": min(gaps), "max": max(gaps)}
    return GenerationResult(
        out_path,
        prompts.summary(),
        len(gaps),
        dict(dropped.most_common()),
        provenance["generator"],
        provenance["judge"],
        sampling,
        spread,
    )


def _pair(
    prompt: list[Message],
    answers: list[str],
    scores: list[float | None],
    picked: tuple[int, int],
    provenance: dict[str, dict[str, str]],
    sampling: dict[str, Any],
) -> dict[str, Any]:
    chosen, rejected = picked
    return {
        "prompt": prompt,
        "chosen": answers[chosen],
        "rejected": answers[rejected],
        "chosen_score": scores[chosen],
        "rejected_score": scores[rejected],
        "generator": provenance["generator"],
        "judge": provenance["judge"],
        "sampling": sampling,
    }
