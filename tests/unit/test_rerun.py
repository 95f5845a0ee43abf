"""What a rerun of a registered training does: skip only what was decided, regate the rest."""

from simpo_core.eval.settings import EvalSettings
from simpo_core.gate.promotion import GateSettings
from simpo_core.gate.rerun import VersionRecord, eval_identity, gate_identity, plan_rerun

IDENTITY = "a" * 64
GATE = "gate-now"


def plan(*versions, force=False):
    return plan_rerun(IDENTITY, list(versions), GATE, "simpo-policy", force)


def test_a_registered_version_that_was_never_gated_is_regated_not_skipped():
    found = plan(VersionRecord("3"))
    assert (found.action, found.version) == ("regate", "3")
    assert "never gated" in found.reason


def test_a_decision_under_the_current_gate_skips_and_one_under_another_gate_regates():
    same = plan(VersionRecord("2", decision="rejected", gate_identity=GATE))
    assert (same.action, same.version) == ("skip", "2") and "pass --force" in same.reason
    other = plan(VersionRecord("2", decision="rejected", gate_identity="gate-before"))
    assert (other.action, other.version) == ("regate", "2")
    legacy = plan(VersionRecord("2", decision="promoted"))  # decided before gate settings were recorded
    assert legacy.action == "regate"


def test_the_champion_and_a_rolled_back_version_are_never_regated():
    assert plan(VersionRecord("4", decision="promoted", gate_identity="old", is_champion=True)).action == "skip"
    rolled = plan(VersionRecord("5", decision="promoted", gate_identity="old", rolled_back=True))
    assert rolled.action == "skip" and "rolled back" in rolled.reason


def test_the_champion_is_preferred_then_the_newest_version():
    chosen = plan(VersionRecord("7"), VersionRecord("2", decision="promoted", gate_identity=GATE, is_champion=True))
    assert (chosen.action, chosen.version) == ("skip", "2")
    newest = plan(VersionRecord("10"), VersionRecord("9", decision="rejected", gate_identity=GATE))
    assert (newest.action, newest.version) == ("regate", "10")  # 10 > 9 as numbers, not as strings


def test_nothing_registered_or_force_trains():
    assert plan().action == "train"
    assert plan(VersionRecord("1", decision="rejected", gate_identity=GATE), force=True).action == "train"


def test_the_gate_identity_follows_the_numbers_not_the_device():
    evaluation, gate = EvalSettings(), GateSettings()
    one = gate_identity(evaluation, gate)
    assert gate_identity(EvalSettings(device="cpu", batch_size=64), gate) == one
    assert gate_identity(evaluation, GateSettings(confidence=0.9)) != one
    assert gate_identity(EvalSettings(generation_samples=4), gate) != one
    assert eval_identity(EvalSettings(device="cpu")) == eval_identity(evaluation)
    assert eval_identity(EvalSettings(judge="none")) != eval_identity(evaluation)
