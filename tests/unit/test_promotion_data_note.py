"""The gate says when the champion was trained on other data than the challenger it is compared with."""

from types import SimpleNamespace

import pytest

from simpo_core.gate.promotion import GateSettings
from tasks import promotion

PAIRS = 40
OUTCOMES = "1" * 20 + "0" * 20


def block(outcomes: str) -> dict:
    return {
        "pairs_sha256": "same",
        "pair_outcomes": outcomes,
        "pair_length_sides": "LS" * (PAIRS // 2),
        "generation": {"collapsed": False, "collapse_reasons": [], "greedy": {"samples": 8, "distinct_rate": 1.0}},
    }


class Runs:
    """The MLflow client's `get_run`, over runs given as {run id: tags}."""

    def __init__(self, runs: dict[str, dict[str, str]]):
        self.runs = runs

    def get_run(self, run_id: str):
        return SimpleNamespace(data=SimpleNamespace(tags=self.runs[run_id]))


@pytest.fixture
def gate(monkeypatch):
    """`decide` against champion v3 (logged from run `champion-run`), re-evaluated as `block(OUTCOMES)`."""
    champion = SimpleNamespace(version="3", run_id="champion-run")
    monkeypatch.setattr(promotion, "current_champion", lambda client, name: champion)
    monkeypatch.setattr(promotion, "evaluate_champion", lambda *args: block(OUTCOMES))

    def decide(runs: dict[str, dict[str, str]], challenger_fingerprint: str | None):
        heldout = {"trained": block("1" * 35 + "0" * 5), "base": block(OUTCOMES)}
        args = (Runs(runs), "simpo-policy", heldout, "heldout.parquet", None, GateSettings(), "sqlite://")
        return promotion.decide(*args, challenger_fingerprint)[0]

    return decide


def test_a_champion_trained_on_other_data_is_named_in_the_reason(gate):
    decision = gate({"champion-run": {"data.fingerprint": "abc123def4567890"}}, "fff000")
    assert decision.promoted, decision.reason
    assert decision.reason.endswith(
        "; champion v3 was trained on other data (fingerprint abc123def456…); both compared on this run's "
        "held-out pairs"
    )
    assert decision.evidence["champion_data_fingerprint"] == "abc123def4567890"
    assert decision.evidence["challenger_data_fingerprint"] == "fff000"


def test_the_same_data_or_an_unknown_fingerprint_adds_no_note(gate):
    same = gate({"champion-run": {"data.fingerprint": "abc123"}}, "abc123")
    assert "other data" not in same.reason and "champion_data_fingerprint" not in same.evidence
    assert "other data" not in gate({"champion-run": {}}, "abc123").reason  # the champion's run recorded none
    assert "other data" not in gate({"champion-run": {"data.fingerprint": "abc123"}}, None).reason


def test_a_sweep_champion_reads_the_fingerprint_of_its_parent_run(gate):
    runs = {"champion-run": {"mlflow.parentRunId": "sweep-run"}, "sweep-run": {"data.fingerprint": "0123456789abcdef"}}
    assert "fingerprint 0123456789ab…" in gate(runs, "fff000").reason
