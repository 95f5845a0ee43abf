"""The model card a registered version carries: lineage, held-out table and the gate's verdict."""

from simpo_core.model_card import MAX_CARD_CHARS, render_model_card
from simpo_core.promotion import PromotionDecision

LINEAGE = {
    "base_model": "tiny",
    "data": {
        "source": "prefs.jsonl",
        "format": "flat",
        "fingerprint": "ab" * 32,
        "total": 110,
        "valid": 100,
        "quarantined": 10,
        "reasons": {"duplicate_pair": 7, "invalid_json": 3},
    },
    "audit": {
        "length_only_accuracy": 0.1,
        "length_bias_strength": 0.9,
        "bias_direction": "chosen shorter",
        "flagged": True,
        "policy": "rebalance",
        "removed": 40,
    },
    "training": {"beta": 2.0, "gamma": 1.0, "lr": 1e-6, "max_steps": 300, "lora": {"r": 8}},
    "links": {"flow_run": "f-1", "mlflow_run": "r-1"},
}
HELDOUT = {
    "pairs": 212,
    "base": {"reward_accuracy": 0.547, "reward_accuracy_ci": [0.486, 0.608], "length_controlled_accuracy": 0.55},
    "trained": {"reward_accuracy": 0.995, "reward_accuracy_ci": [0.986, 1.0], "length_controlled_accuracy": None},
}


def test_card_names_lineage_numbers_and_verdict():
    decision = PromotionDecision(False, "accuracy gain not significant [p=0.5]")
    card = render_model_card("simpo-policy", "7", LINEAGE, HELDOUT, decision, champion={"reward_accuracy": 0.99})
    assert card.startswith("# simpo-policy v7\n")
    assert "**Gate: not promoted.** accuracy gain not significant [p=0.5]" in card
    assert "100 valid of 110, 10 quarantined (duplicate_pair 7, invalid_json 3)" in card
    assert "fingerprint `abababababababab`" in card
    assert "**flagged**: chosen shorter wins (strength 0.900), policy rebalance, removed 40" in card
    assert "lr=1e-06, max_steps=300, lora r=8" in card
    assert "| reward accuracy | 0.547 [0.486, 0.608] | 0.995 [0.986, 1.000] | 0.990 |" in card
    assert "| length-controlled accuracy | 0.550 | – | – |" in card
    assert "- mlflow_run: `r-1`" in card


def test_card_fits_a_registry_description():
    long_reason = PromotionDecision(True, "x" * 10_000)
    assert len(render_model_card("m", "1", LINEAGE, HELDOUT, long_reason)) <= MAX_CARD_CHARS
