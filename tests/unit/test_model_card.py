"""The model card a registered version carries: lineage, held-out table and the gate's verdict."""

from simpo_core.gate.model_card import MAX_CARD_CHARS, render_model_card
from simpo_core.gate.promotion import PromotionDecision

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


HEAD_TO_HEAD = {
    "judge": "reward-model",
    "reference": "champion v3",
    "decoding": "greedy",
    "prompts": 16,
    "judged": 16,
    "wins": 9,
    "losses": 2,
    "ties": 5,
    "win_rate": 11.5 / 16,
    "lc_win_rate": 0.6912,
    "p_value": 67 / 2048,
    "note": "",
    "samples": [
        {
            "prompt": f"List some fruit words ({i}).",
            "challenger": "apple, pear `x`\n" + "plum " * 200,
            "reference": "",
            "challenger_score": 0.5,
            "reference_score": -1.25,
        }
        for i in range(3)
    ],
}


def test_card_shows_the_head_to_head_table_and_three_answer_pairs():
    decision = PromotionDecision(True, "beats champion v3")
    card = render_model_card("m", "4", LINEAGE, HELDOUT, decision, {"reward_accuracy": 0.9}, HEAD_TO_HEAD)
    assert "## Answers judged against champion v3" in card
    assert "| 16 | 9 | 2 | 5 | 0.719 | 0.691 | 0.0327 |" in card
    assert card.count("- this version (0.500): `apple, pear 'x' plum plum") == 3  # one line, backticks made safe
    assert card.count("- reference (-1.250): (empty)") == 3
    assert "**3.** `List some fruit words (2).`" in card
    assert len(card) <= MAX_CARD_CHARS and "- mlflow_run: `r-1`" in card  # long answers are cut, the links stay
