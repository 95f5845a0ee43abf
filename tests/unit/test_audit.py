"""Length audit: figures on hand-made frames, policies, rebalancing and its recorded drops."""

import json

import numpy as np
import pandas as pd
import pytest

from simpo_core.audit.balance import audit_length_balance
from simpo_core.audit.metrics import length_report, point_biserial, rebalance_drops
from simpo_core.audit.settings import AuditSettings
from simpo_core.data.tokens import count_tokens
from simpo_core.errors import ConfigError, DataError
from simpo_core.tiny_model import build_tiny_tokenizer


@pytest.fixture(scope="module")
def tokenizer():
    return build_tiny_tokenizer()  # byte-level: an ASCII character is one token


def frame_of(lengths):
    """Pairs whose chosen/rejected have the given (chosen, rejected) character lengths."""
    return pd.DataFrame(
        {
            "prompt": [[{"role": "user", "content": f"q{i}"}] for i in range(len(lengths))],
            "chosen": [f"{i:03d}".ljust(c, "c") for i, (c, _) in enumerate(lengths)],
            "rejected": [f"{i:03d}".ljust(r, "r") for i, (_, r) in enumerate(lengths)],
            "source_row": range(1, len(lengths) + 1),
        }
    )


def test_figures_on_a_hand_made_frame(tokenizer):
    # chosen longer in 3 pairs (10>5, 8>4, 6>3), shorter in 1 (4<8), tied in 1 (5=5)
    frame = frame_of([(10, 5), (8, 4), (6, 3), (4, 8), (5, 5)])
    report = audit_length_balance(frame, tokenizer).report
    assert report["pairs"] == 5
    assert report["chosen_mean_tokens"] == pytest.approx(33 / 5)
    assert report["rejected_mean_tokens"] == pytest.approx(25 / 5)
    assert (report["chosen_median_tokens"], report["rejected_median_tokens"]) == (6.0, 5.0)
    assert report["chosen_longer_fraction"] == pytest.approx(3 / 5)
    assert report["length_only_accuracy"] == pytest.approx(3 / 4)  # the tie is excluded
    assert report["flagged"] is True and report["removed"] == 0
    # d = 5, 4, 3, -4, 0: mean 8/5, mean of squares 66/5
    assert report["point_biserial"] == pytest.approx((8 / 5) / np.sqrt(66 / 5))


def test_point_biserial_matches_the_correlation_over_both_orders():
    rng = np.random.default_rng(0)
    d = rng.integers(-20, 40, size=200).astype(float)
    values = np.concatenate([d, -d])
    labels = np.concatenate([np.ones_like(d), np.zeros_like(d)])
    assert point_biserial(d) == pytest.approx(np.corrcoef(values, labels)[0, 1])
    assert point_biserial(np.zeros(3)) == 0.0


def test_buckets_partition_the_pairs():
    chosen = np.arange(1, 101, dtype=float)
    rejected = chosen + np.where(np.arange(100) < 50, -0.5, 0.5)
    buckets = length_report(chosen, rejected)["buckets"]
    assert len(buckets) == 4 and sum(b["pairs"] for b in buckets) == 100
    assert buckets[0]["chosen_longer_fraction"] == 1.0 and buckets[-1]["chosen_longer_fraction"] == 0.0


def test_unbiased_data_is_not_flagged(tokenizer):
    report = audit_length_balance(frame_of([(10, 5), (5, 10)] * 5), tokenizer, AuditSettings(policy="fail")).report
    assert report["length_only_accuracy"] == 0.5 and report["flagged"] is False


def test_fail_policy_raises_with_the_numbers(tokenizer):
    with pytest.raises(
        DataError, match=r"chosen longer wins: length_only_accuracy=0\.800, strength 0\.800 \(threshold 0\.65\)"
    ):
        audit_length_balance(frame_of([(10, 5)] * 8 + [(5, 10)] * 2), tokenizer, AuditSettings(policy="fail"))


def test_rebalance_drops_the_fewest_longer_pairs_and_returns_them(tokenizer, tmp_path):
    # 8 of 10 chosen longer; within 0.5 +- 0.05 needs (8 - k) / (10 - k) <= 0.55: k = 6 (2/4 = 0.5;
    # k = 5 gives 3/5 = 0.6)
    frame = frame_of([(10, 5)] * 8 + [(5, 10)] * 2)
    result = audit_length_balance(frame, tokenizer, AuditSettings(policy="rebalance"), out_dir=tmp_path)
    assert result.report["removed"] == len(result.removed) == 6
    assert result.report["after"]["chosen_longer_fraction"] == 0.5
    assert len(result.frame) == 4 and set(result.removed["reason"]) == {"length_rebalance"}
    assert (result.removed["chosen"].str.len() > result.removed["rejected"].str.len()).all()
    assert set(result.frame["source_row"]) | set(result.removed["source_row"]) == set(range(1, 11))
    assert json.loads(result.paths["json"].read_text())["removed"] == 6


def test_rebalance_is_deterministic_under_reordering(tokenizer):
    frame = frame_of([(12, 5)] * 30 + [(5, 12)] * 10)
    first = audit_length_balance(frame, tokenizer, AuditSettings(policy="rebalance", seed=7))
    shuffled = audit_length_balance(
        frame.sample(frac=1.0, random_state=1), tokenizer, AuditSettings(policy="rebalance", seed=7)
    )
    assert sorted(first.removed["source_row"]) == sorted(shuffled.removed["source_row"])
    other_seed = audit_length_balance(frame, tokenizer, AuditSettings(policy="rebalance", seed=8))
    assert sorted(first.removed["source_row"]) != sorted(other_seed.removed["source_row"])


def test_rebalance_of_chosen_mostly_shorter_drops_shorter_pairs():
    chosen = np.array([5, 5, 5, 5, 10.0])
    rejected = np.array([10, 10, 10, 10, 5.0])
    drops = rebalance_drops(chosen, rejected, np.arange(5), tolerance=0.0)
    assert list(drops) == [0, 1, 2]  # 1 longer of 2 left


def test_rebalance_impossible_is_a_clear_error(tokenizer):
    with pytest.raises(DataError, match="longer in every pair"):
        audit_length_balance(frame_of([(10, 5)] * 4), tokenizer, AuditSettings(policy="rebalance"))


def test_reports_are_written(tokenizer, tmp_path):
    paths = audit_length_balance(frame_of([(10, 5), (5, 9)] * 3), tokenizer, out_dir=tmp_path).paths
    assert paths["png"].read_bytes()[:4] == b"\x89PNG"
    assert "| length-only accuracy (ties excluded) | 0.500 |" in paths["markdown"].read_text()


def test_bad_settings_name_the_field():
    with pytest.raises(ConfigError, match="policy: Input should be 'warn', 'fail' or 'rebalance'"):
        AuditSettings.from_values({"policy": "ignore"})
    with pytest.raises(ConfigError, match="threshold: Input should be greater than 0.5"):
        AuditSettings.from_values({"threshold": 0.3})


def test_byte_level_shortcut_matches_the_tokenizer(tokenizer):
    texts = pd.Series(["héllo wörld", "", "emoji 🙂 ok", "has </s> inside", "<pad>x<extra_id_3>"], dtype="str")
    expected = [len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]
    assert list(count_tokens(texts, tokenizer)) == expected


def test_generic_tokenizer_path_is_batched():
    class WordTokenizer:  # any tokenizer that is not byte-level goes through __call__
        calls = 0

        def __call__(self, batch, **kwargs):
            WordTokenizer.calls += 1
            return {"input_ids": [text.split() for text in batch]}

    lengths = count_tokens(pd.Series(["a b c", "d", "e f"] * 3), WordTokenizer(), batch_size=4)
    assert list(lengths) == [3, 1, 2] * 3 and WordTokenizer.calls == 3


def test_the_audit_step_moves_rebalanced_rows_from_valid_to_quarantine(tokenizer, tmp_path, monkeypatch):
    """The step `simpo audit` and the flow share: a rebalance rewrites valid.parquet, and every
    row stays in exactly one of the two files (total = valid + quarantined)."""
    import simpo_core.audit.balance as balance
    from simpo_core.audit.balance import audit
    from simpo_core.data.synthetic import generate_pairs, write_jsonl
    from simpo_core.data.validation_stream import validate_source

    source = tmp_path / "biased.jsonl"
    write_jsonl(generate_pairs(200, 0.8, seed=4), source)
    validated = validate_source(str(source), tmp_path / "data")
    generated = pd.read_parquet(validated.valid_path)
    monkeypatch.setattr(balance, "CHUNK_ROWS", 30)  # the step reads and rewrites in several chunks
    result = audit(validated, tokenizer, AuditSettings(policy="rebalance"), tmp_path / "audit")
    valid = pd.read_parquet(validated.valid_path)
    quarantined = [json.loads(line) for line in validated.quarantine_path.read_text().split("\n") if line]
    assert len(quarantined) == result.report["removed"] > 0 and result.frame is None  # streamed: files only
    assert len(valid) + len(quarantined) == validated.summary["total"] == 200
    assert {line["reasons"][0] for line in quarantined} == {"length_rebalance"}
    assert sorted([*valid["source_row"], *(line["source_row"] for line in quarantined)]) == list(range(1, 201))
    in_memory = audit_length_balance(generated, tokenizer, AuditSettings(policy="rebalance"))
    assert sorted(in_memory.frame["source_row"]) == sorted(valid["source_row"])  # the same drops either way


@pytest.mark.parametrize(
    "lengths, direction, flagged",
    [
        ([(5, 10)] * 9 + [(10, 5)], "chosen shorter", True),  # shorter wins in 90 %: length predicts it too
        ([(10, 5)] * 9 + [(5, 10)], "chosen longer", True),
        ([(10, 5), (5, 10)] * 5, "none", False),
    ],
)
def test_length_bias_is_flagged_in_both_directions(tokenizer, lengths, direction, flagged):
    report = audit_length_balance(frame_of(lengths), tokenizer).report
    assert (report["bias_direction"], report["flagged"]) == (direction, flagged)
    assert report["length_bias_strength"] == pytest.approx(0.9 if flagged else 0.5)


def test_rebalance_of_a_shorter_wins_bias_drops_shorter_pairs(tokenizer):
    # 8 of 10 chosen shorter: keep chosen-longer within 0.5 +- 0.05 by dropping 6 shorter pairs.
    result = audit_length_balance(frame_of([(5, 10)] * 8 + [(10, 5)] * 2), tokenizer, AuditSettings(policy="rebalance"))
    assert result.report["removed"] == 6 and result.report["after"]["length_bias_strength"] == 0.5
    assert (result.removed["chosen"].str.len() < result.removed["rejected"].str.len()).all()
