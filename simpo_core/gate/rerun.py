"""What a scheduled rerun does with a training that is registered already: skip, regate or train.

    nothing registered from this identity          -> train
    the champion came from it                      -> skip (it is what is served)
    a version was rolled back                      -> skip (a person decided against it)
    a version carries a gate decision taken under
      the current evaluation and gate settings     -> skip (nothing new to decide)
    a version was registered but never gated, or
      gated under other evaluation/gate settings   -> regate: evaluate and gate that version,
                                                      no training, no second version

The evaluation and gate settings are not part of the training identity (they do not change
the weights); `gate_identity` names them, and the gate records it with its decision, so a
changed gate re-decides an unchanged training instead of retraining it. Pure logic on what
the registry holds; the task in `tasks/identity.py` reads the registry and applies it.
"""

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Literal

# Evaluation settings that change where or how fast the evaluation runs, not its numbers.
IGNORED_EVAL_FIELDS = ("device", "trust_remote_code", "batch_size")

RerunAction = Literal["train", "skip", "regate"]


@dataclass(frozen=True)
class VersionRecord:
    """What the registry says about one version made from a training identity."""

    version: str
    decision: str | None = None  # "promoted" / "rejected", as the gate recorded it
    gate_identity: str | None = None  # the settings that decision was taken under
    is_champion: bool = False
    rolled_back: bool = False


@dataclass(frozen=True)
class RerunPlan:
    """The rerun's course: `action` on `version` (None when it trains), and why."""

    identity: str
    action: RerunAction
    version: str | None
    reason: str


def eval_identity(eval_settings: Any) -> str:
    """SHA-256 over the evaluation settings that decide the held-out numbers (not the device)."""
    evaluation = {k: v for k, v in eval_settings.model_dump(mode="json").items() if k not in IGNORED_EVAL_FIELDS}
    return _sha256({"eval": evaluation})


def gate_identity(eval_settings: Any, gate_settings: Any) -> str:
    """SHA-256 over the evaluation and gate settings that decide a promotion."""
    return _sha256({"eval": eval_identity(eval_settings), "gate": gate_settings.model_dump(mode="json")})


def _sha256(payload: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def plan_rerun(
    identity: str, versions: list[VersionRecord], current_gate: str, name: str, force: bool = False
) -> RerunPlan:
    """Decide what to do with a training of `identity` given the versions made from it.

    Args:
        identity: the training identity of this run.
        versions: the versions of `name` registered from `identity` (any order).
        current_gate: `gate_identity` of this run's evaluation and gate settings.
        name: the registered model's name (for the reason).
        force: train anyway (`--force`).
    """
    short = identity[:12]
    if force:
        return RerunPlan(identity, "train", None, "forced: training anyway")
    if not versions:
        return RerunPlan(identity, "train", None, "no registered version was trained from this identity")
    found = max(versions, key=lambda record: (record.is_champion, int(record.version)))
    label = f"{name} v{found.version}"
    unchanged = f"was trained from the same data, settings, starting model and code (identity {short})"
    if found.is_champion:
        return RerunPlan(
            identity, "skip", found.version, f"unchanged: {label} {unchanged} and is the champion; " + _FORCE
        )
    if found.rolled_back:
        return RerunPlan(
            identity, "skip", found.version, f"unchanged: {label} {unchanged} and was rolled back; " + _FORCE
        )
    if found.decision is None:
        reason = f"regate: {label} {unchanged} but was never gated (its promotion did not finish); gating it now"
        return RerunPlan(identity, "regate", found.version, reason)
    if found.gate_identity != current_gate:
        reason = (
            f"regate: {label} {unchanged} and was {found.decision} under other evaluation or gate settings; "
            "evaluating and gating it again under the current ones"
        )
        return RerunPlan(identity, "regate", found.version, reason)
    reason = f"unchanged: {label} {unchanged} and was {found.decision} under the same gate; " + _FORCE
    return RerunPlan(identity, "skip", found.version, reason)


_FORCE = "nothing to retrain (pass --force to retrain anyway)"
