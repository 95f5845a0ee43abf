"""The champion gate: when a challenger may take the `champion` alias.

Pure logic on two evaluation blocks measured on the same held-out pairs (and the judge's
verdicts: the evaluation's against the starting model, the judged head-to-head of both
models' answers), so the rule is tested on literal per-pair outcomes and the registry code
only applies the decision. The tests are in `simpo_core.gate.paired_test` and
`simpo_core.eval.head_to_head`; `docs/evaluation.md` says why they were chosen.

`registry.gate_on` says what decides: `reward_accuracy` (the paired test on held-out pairs),
`judge` (the head-to-head's sign test) or `both`. Unset, it is `reward_accuracy` when no
head-to-head was judged, and otherwise `both` with the head-to-head held to non-inferiority
(a veto on answers significantly worse): a sign test on the default 16 prompts can rarely
show superiority, and a default that refused nearly every challenger would teach users to
switch the judge off. Set `gate_on` to hold the answers to `registry.gate` as well.
"""

from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import Field

from simpo_core.gate.paired_test import PairedComparison, compare_accuracy, compare_length_controlled
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
    gate_on: Literal["reward_accuracy", "judge", "both"] | None = Field(
        None,
        description="what decides: reward_accuracy (paired test on the held-out pairs), judge (sign test of the "
        "judged head-to-head of both models' answers, under `gate`), both (each must pass); unset: "
        "reward_accuracy, plus with a judge a veto on answers significantly worse than the reference's",
    )

    def decides_on(self, judged: bool) -> tuple[str, str | None]:
        """(what decides, the policy the head-to-head is held to or None) when a head-to-head
        was `judged` (a judge scored at least one answer pair) or not."""
        if self.gate_on is not None:
            return self.gate_on, None if self.gate_on == "reward_accuracy" else self.gate
        return ("both", "non-inferiority") if judged else ("reward_accuracy", None)


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
    head_to_head: dict[str, Any] | None = None,
) -> PromotionDecision:
    """Decide whether the challenger replaces the reference.

    Args:
        challenger: the trained model's evaluation block (with `pair_outcomes`,
            `pair_length_sides`, `pairs_sha256` and `generation`).
        reference: the champion's block on the same pairs, or the starting model's on a first run.
        reference_name: how the reason names the reference, e.g. "champion v3".
        settings: the gate policy (`GateSettings`).
        judge: the evaluation's judge block (challenger vs starting model), if a judge ran.
        head_to_head: the judged head-to-head against the same reference
            (`simpo_core.eval.head_to_head`), if one ran.

    Returns:
        The decision; `evidence` holds the tests' numbers for tags and the model card.
    """
    settings = settings or GateSettings()
    if challenger.get("pairs_sha256") != reference.get("pairs_sha256"):
        return PromotionDecision(False, f"{reference_name} was evaluated on other held-out pairs: no paired comparison")
    gate_on, answers_rule = settings.decides_on(bool((head_to_head or {}).get("judged")))
    blockers = _collapse_blockers(challenger.get("generation"), settings)
    accuracy = compare_accuracy(challenger["pair_outcomes"], reference["pair_outcomes"], settings.confidence)
    controlled = compare_length_controlled(
        challenger["pair_outcomes"], reference["pair_outcomes"], challenger["pair_length_sides"], settings.confidence
    )
    judge_rate = (judge or {}).get("length_controlled_win_rate")
    notes: list[str] = []
    if gate_on != "judge":
        blockers += _accuracy_blockers(accuracy, settings, reference_name)
        answers_lc = answers_rule is not None and (head_to_head or {}).get("lc_win_rate") is not None
        notes, lc_blockers = _length_control(controlled, settings, judge_rate is not None or answers_lc)
        blockers += lc_blockers
    blockers += _judge_blockers(judge, settings)
    if answers_rule is not None:
        blockers += _head_to_head_blockers(head_to_head, answers_rule, settings, reference_name)
    evidence = {
        "gate": settings.gate,
        "gate_on": gate_on,
        "answers_rule": answers_rule,
        "reference": reference_name,
        "accuracy": accuracy.as_dict(),
        "length_controlled": controlled.as_dict() if controlled else None,
        "judge_length_controlled_win_rate": judge_rate,
        # The figures without the quoted answers: the evidence is a registry tag of bounded size.
        "head_to_head": {k: v for k, v in head_to_head.items() if k != "samples"} if head_to_head else None,
    }
    figures = _figures(accuracy, controlled, settings) + notes
    figures += _head_to_head_figures(head_to_head, reference_name, answers_rule, settings)
    if blockers:
        return PromotionDecision(False, "; ".join(blockers) + " [" + "; ".join(figures) + "]", evidence)
    return PromotionDecision(
        True, f"beats {reference_name} ({_policy(gate_on, answers_rule, settings)}): " + "; ".join(figures), evidence
    )


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


def _policy(gate_on: str, answers_rule: str | None, settings: GateSettings) -> str:
    """How the promoted reason names the rule: the accuracy policy alone, as before, or with the answers'."""
    if gate_on == "reward_accuracy":
        return settings.gate
    if gate_on == "judge":
        return f"answers, {answers_rule}"
    return f"{settings.gate}; answers, {answers_rule}"


def _head_to_head_blockers(
    head_to_head: dict[str, Any] | None, rule: str, settings: GateSettings, reference_name: str
) -> list[str]:
    """The answers' rule: superiority needs the one-sided sign test significant and a length-controlled
    win rate above ½ (wins that length alone explains do not count); non-inferiority refuses answers
    significantly worse. Without a judged head-to-head a rule that needs one refuses."""
    alpha = 1.0 - settings.confidence
    if not (head_to_head or {}).get("judged"):
        why = (head_to_head or {}).get("note") or "none ran (eval.judge is none, or no challenger model to answer)"
        return [
            f"registry.gate_on={_gate_on_name(settings)} needs the judged head-to-head of both models' answers: {why}"
        ]
    if rule == "non-inferiority":
        if head_to_head["p_value_worse"] < alpha:
            return [
                f"answers significantly worse than those of {reference_name} (sign test p={head_to_head['p_value_worse']:.3g} "
                f"< {alpha:.3g} that the challenger loses more often)"
            ]
        return []
    if not head_to_head["p_value"] < alpha:
        return [
            f"answers not significantly better than those of {reference_name} (sign test p={head_to_head['p_value']:.3g}, "
            f"superiority needs < {alpha:.3g})"
        ]
    lc_rate = head_to_head.get("lc_win_rate")
    if lc_rate is not None and lc_rate <= 0.5:
        return [f"answers beat those of {reference_name} only by length (LC win rate {lc_rate:.3f} <= 0.5)"]
    return []


def _gate_on_name(settings: GateSettings) -> str:
    return settings.gate_on or "automatic"


def _head_to_head_figures(
    head_to_head: dict[str, Any] | None, reference_name: str, rule: str | None, settings: GateSettings
) -> list[str]:
    """The head-to-head's numbers, named in every reason where one ran, gated on or not."""
    if not head_to_head:
        return []
    gated = f"answers held to {rule}" if rule else f"not gated on: registry.gate_on={_gate_on_name(settings)}"
    source = f"judge {head_to_head.get('judge')}, {head_to_head.get('decoding', 'greedy')}"
    if not head_to_head.get("judged"):
        return [f"answers vs {reference_name} ({source}; {gated}): {head_to_head.get('note') or 'none judged'}"]
    lc_rate = head_to_head.get("lc_win_rate")
    return [
        f"answers vs {reference_name} ({source}; {gated}): {head_to_head['wins']} wins, {head_to_head['losses']} "
        f"losses, {head_to_head['ties']} ties of {head_to_head['judged']} judged, win rate "
        f"{head_to_head['win_rate']:.3f}, LC win rate {'–' if lc_rate is None else f'{lc_rate:.3f}'}, sign test "
        f"p={head_to_head['p_value']:.3g} (one-sided, better), p={head_to_head['p_value_worse']:.3g} (worse)"
    ]
