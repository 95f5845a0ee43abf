"""The champion gate: when a challenger may take the `champion` alias.

Pure logic on two evaluation blocks measured on the same held-out pairs (and the judge's
verdict), so the rule is tested on literal per-pair outcomes and the registry code only
applies the decision. The tests are in `simpo_core.paired_test`; `docs/evaluation.md`
says why they were chosen.
"""

from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import Field

from simpo_core.paired_test import PairedComparison, compare_accuracy, compare_length_controlled
from simpo_core.settings import StepSettings

MIN_DISTINCT_RATE = 0.5  # greedy answers to different prompts: below this share distinct is collapse


class GateSettings(StepSettings):
    """How sure the gate must be before it moves the champion."""

    gate: Literal["superiority", "non-inferiority"] = Field(
        "superiority",
        description="superiority: promote only a significantly better challenger; non-inferiority: promote "
        "unless it is significantly worse by more than max_loss (prefers the model trained on fresher data)",
    )
    confidence: float = Field(0.95, gt=0.5, lt=1, description="confidence of each one-sided test")
    min_gain: float = Field(
        0.0, ge=0, lt=1, description="superiority: the lower bound of the accuracy gain must exceed this"
    )
    max_loss: float = Field(
        0.02, ge=0, lt=1, description="non-inferiority: refuse when the gain's upper bound is below -max_loss"
    )
    allow_undefined_length_control: bool = Field(
        False,
        description="promote when length-controlled accuracy is undefined on the held-out pairs and no judge "
        "gives a length-controlled win rate (off: such a decision would rest on raw accuracy alone)",
    )
    min_generation_samples: int = Field(
        8, ge=1, description="held-out prompts the challenger must have answered for the collapse check"
    )


@dataclass(frozen=True)
class PromotionDecision:
    """The verdict, a reason that names every number and test, and the evidence behind it."""

    promoted: bool
    reason: str
    evidence: dict[str, Any] = field(default_factory=dict)


def decide_promotion(
    challenger: dict[str, Any],
    reference: dict[str, Any],
    reference_name: str,
    settings: GateSettings | None = None,
    judge: dict[str, Any] | None = None,
) -> PromotionDecision:
    """Decide whether the challenger replaces the reference.

    Args:
        challenger: the trained model's evaluation block (with `pair_outcomes`,
            `pair_length_sides`, `pairs_sha256` and `generation`).
        reference: the champion's block on the same pairs, or the starting model's on a first run.
        reference_name: how the reason names the reference, e.g. "champion v3".
        settings: the gate policy (`GateSettings`).
        judge: the evaluation's judge block (challenger vs starting model), if a judge ran.

    Returns:
        The decision; `evidence` holds the tests' numbers for tags and the model card.
    """
    settings = settings or GateSettings()
    if challenger.get("pairs_sha256") != reference.get("pairs_sha256"):
        return PromotionDecision(False, f"{reference_name} was evaluated on other held-out pairs: no paired comparison")
    blockers = _collapse_blockers(challenger.get("generation"), settings)
    accuracy = compare_accuracy(challenger["pair_outcomes"], reference["pair_outcomes"], settings.confidence)
    controlled = compare_length_controlled(
        challenger["pair_outcomes"], reference["pair_outcomes"], challenger["pair_length_sides"], settings.confidence
    )
    blockers += _accuracy_blockers(accuracy, settings, reference_name)
    judge_rate = (judge or {}).get("length_controlled_win_rate")
    notes, lc_blockers = _length_control(controlled, settings, judge_rate is not None)
    blockers += lc_blockers + _judge_blockers(judge, settings)
    evidence = {
        "gate": settings.gate,
        "reference": reference_name,
        "accuracy": accuracy.as_dict(),
        "length_controlled": controlled.as_dict() if controlled else None,
        "judge_length_controlled_win_rate": judge_rate,
    }
    figures = _figures(accuracy, controlled, settings) + notes
    if blockers:
        return PromotionDecision(False, "; ".join(blockers) + " [" + "; ".join(figures) + "]", evidence)
    return PromotionDecision(True, f"beats {reference_name} ({settings.gate}): " + "; ".join(figures), evidence)


def _collapse_blockers(generation: dict[str, Any] | None, settings: GateSettings) -> list[str]:
    """Collapse always blocks, and too few answers to look for it block too."""
    prompts = ((generation or {}).get("greedy") or {}).get("samples", 0)
    if prompts < settings.min_generation_samples:
        return [
            f"only {prompts} held-out prompts answered, fewer than registry.min_generation_samples="
            f"{settings.min_generation_samples}: collapse cannot be ruled out (raise eval.generation_samples)"
        ]
    blockers = [f"challenger collapsed ({reason})" for reason in generation.get("collapse_reasons") or []]
    if generation.get("collapsed") and not blockers:
        blockers.append("challenger collapsed")
    distinct = generation["greedy"].get("distinct_rate")
    if distinct is not None and distinct < MIN_DISTINCT_RATE:
        blockers.append(f"challenger collapsed (greedy distinct-answer rate {distinct:.2f} < {MIN_DISTINCT_RATE})")
    return blockers


def _accuracy_blockers(accuracy: PairedComparison, settings: GateSettings, reference_name: str) -> list[str]:
    level = f"{settings.confidence:.0%}"
    if settings.gate == "superiority" and not accuracy.gain_lower > settings.min_gain:
        return [
            f"accuracy gain over {reference_name} not significant: lower {level} bound {accuracy.gain_lower:+.3f} "
            f"<= registry.min_gain {settings.min_gain:g}"
        ]
    if settings.gate == "non-inferiority" and accuracy.gain_upper < -settings.max_loss:
        return [
            f"significantly worse than {reference_name}: upper {level} bound of the accuracy gain "
            f"{accuracy.gain_upper:+.3f} < -registry.max_loss {settings.max_loss:g}"
        ]
    return []


def _length_control(
    controlled: PairedComparison | None, settings: GateSettings, judge_has_rate: bool
) -> tuple[list[str], list[str]]:
    """(notes, blockers) for length-controlled accuracy, which must not be significantly worse."""
    if controlled is None:
        why = "length-controlled accuracy undefined (no held-out pair has its chosen answer on one side of the length divide)"
        if judge_has_rate:
            return [f"{why}: the judge's length-controlled win rate decides"], []
        if settings.allow_undefined_length_control:
            return [f"{why}: allowed by registry.allow_undefined_length_control"], []
        return [], [
            f"{why} and no judge gives a length-controlled win rate: length exploitation cannot be ruled out "
            "(add balanced held-out pairs, enable a judge, or set registry.allow_undefined_length_control)"
        ]
    if controlled.gain_upper < 0:
        level = f"{settings.confidence:.0%}"
        return [], [
            f"length-controlled accuracy significantly worse (upper {level} bound {controlled.gain_upper:+.3f} < 0)"
        ]
    return [], []


def _judge_blockers(judge: dict[str, Any] | None, settings: GateSettings) -> list[str]:
    interval = (judge or {}).get("length_controlled_win_rate_ci")
    if not interval or interval[1] is None or not interval[1] < 0.5:
        return []
    return [
        f"judge {judge.get('name')}: length-controlled win rate {judge['length_controlled_win_rate']:.3f} "
        f"significantly below 0.5 (interval {interval[0]:.3f}..{interval[1]:.3f})"
    ]


def _figures(accuracy: PairedComparison, controlled: PairedComparison | None, settings: GateSettings) -> list[str]:
    """The numbers behind the decision. Each one-sided bound is named by the rule that reads it:
    written as `lower..upper` they would read as one interval, which they are not."""
    level = f"{settings.confidence:.0%}"
    floor = -settings.max_loss if settings.max_loss else 0.0  # no "-0.000"
    figures = [
        f"accuracy gain {accuracy.gain:+.3f} over {accuracy.pairs} pairs ({accuracy.challenger_only} won, "
        f"{accuracy.reference_only} lost; McNemar exact p={accuracy.p_better:.3g}), "
        f"lower {level} bound {accuracy.gain_lower:+.3f} (superiority needs > {settings.min_gain:.3f}), "
        f"upper {level} bound {accuracy.gain_upper:+.3f} (non-inferiority refuses below {floor:.3f})"
    ]
    if controlled is not None:
        figures.append(
            f"length-controlled gain {controlled.gain:+.3f}, lower {level} bound {controlled.gain_lower:+.3f}, "
            f"upper {level} bound {controlled.gain_upper:+.3f} (the gate refuses below 0)"
        )
    return figures
