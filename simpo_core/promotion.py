"""The promotion rule: when a challenger may take the `champion` alias.

Pure logic on two metric blocks measured on the same held-out pairs, so the rule is
tested on literal numbers and the registry code only applies the decision.
"""

from dataclasses import dataclass
from typing import Any

# A challenger must beat the reference on both: raw preference accuracy, and the
# length-controlled accuracy that a "longer wins" model cannot inflate.
GATED_METRICS = ("reward_accuracy", "length_controlled_accuracy")


@dataclass(frozen=True)
class PromotionDecision:
    promoted: bool
    reason: str


def decide_promotion(
    challenger: dict[str, Any], reference: dict[str, Any], reference_name: str, margin: float = 0.0
) -> PromotionDecision:
    """Decide whether the challenger replaces the reference.

    Args:
        challenger: metric block of the newly trained model (evaluation `trained` block).
        reference: metric block of the current champion, or of the starting model on a
            first run, computed on the same held-out pairs.
        reference_name: how the reason names the reference, e.g. "champion v3".
        margin: the challenger must exceed each gated metric by more than this.

    Returns:
        The decision with a one-line reason that quotes the numbers.
    """
    # length_controlled_accuracy is undefined (None) when every held-out pair has the chosen
    # response on the same side of the length divide; gate on what can be measured.
    gated = [name for name in GATED_METRICS if challenger.get(name) is not None and reference.get(name) is not None]
    skipped = [name for name in GATED_METRICS if name not in gated]
    shortfalls = []
    if (challenger.get("generation") or {}).get("collapsed"):
        shortfalls.append("challenger collapsed into repetitive generations")
    for name in gated:
        ours, theirs = float(challenger[name]), float(reference[name])
        if not ours > theirs + margin:
            shortfalls.append(
                f"{name} {ours:.3f} does not beat {reference_name}'s {theirs:.3f} by more than {margin:g}"
            )
    note = f" ({', '.join(skipped)} undefined on these pairs)" if skipped else ""
    if shortfalls:
        return PromotionDecision(False, "; ".join(shortfalls) + note)
    gains = ", ".join(f"{name} {float(challenger[name]):.3f} vs {float(reference[name]):.3f}" for name in gated)
    return PromotionDecision(True, f"beats {reference_name}: {gains} (margin {margin:g}){note}")
