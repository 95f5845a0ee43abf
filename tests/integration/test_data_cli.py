"""`simpo validate` and `simpo audit` end to end: JSON summaries, files, exit codes."""

import json
import subprocess
import sys

import pandas as pd

from tests.conftest import DPO_EN_DEMO_FACTS


def run_cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], capture_output=True, text=True, cwd=cwd)


def last_json(result):
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_validate_dpo_en_demo(dpo_en_demo_path, tmp_path):
    result = run_cli("validate", str(dpo_en_demo_path), "--out", str(tmp_path / "v"), "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    summary, facts = last_json(result), DPO_EN_DEMO_FACTS[dpo_en_demo_path.name]
    assert (summary["total"], summary["valid"]) == (facts["records"], facts["valid"])
    assert summary["reasons"] == {"duplicate_pair": facts["duplicates"]} and summary["format"] == "sharegpt"
    assert len(pd.read_parquet(summary["valid_path"])) == facts["valid"]


def test_validate_fails_above_the_invalid_fraction_but_prints_the_summary(tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text('{"prompt": "p", "chosen": "a", "rejected": "b"}\nnot json\n')
    result = run_cli("validate", str(data), "--out", str(tmp_path / "v"), "--json", cwd=tmp_path)
    assert result.returncode == 1
    assert "1 of 2 rows (50.0%) failed validation" in result.stderr and "invalid_json (1)" in result.stderr
    assert last_json(result)["reasons"] == {"invalid_json": 1}
    ok = run_cli(
        "validate", str(data), "--out", str(tmp_path / "v"), "--max-invalid-fraction", "0.5", "--json", cwd=tmp_path
    )
    assert ok.returncode == 0 and last_json(ok)["quarantined"] == 1


def test_validate_reads_an_openai_export_and_reports_a_mixed_file(tmp_path):
    openai = {
        "input": {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]},
        "preferred_output": [{"role": "assistant", "content": "Hello."}],
        "non_preferred_output": [{"role": "assistant", "content": "Go away."}],
    }
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps(openai) + "\n")
    forced = run_cli("validate", str(data), "--out", str(tmp_path / "a"), "--format", "openai", "--json", cwd=tmp_path)
    assert forced.returncode == 0, forced.stderr
    assert (last_json(forced)["valid"], last_json(forced)["format"]) == (1, "openai")
    data.write_text(json.dumps(openai) + "\n" + json.dumps({"prompt": "p", "chosen": "a", "rejected": "b"}) + "\n")
    mixed = run_cli("validate", str(data), "--out", str(tmp_path / "b"), "--json", cwd=tmp_path)
    assert mixed.returncode == 0, mixed.stderr
    summary = last_json(mixed)
    assert (summary["valid"], summary["format"], summary["formats"]) == (2, "mixed", {"openai": 1, "flat": 1})


def test_validate_missing_file_is_a_clear_error(tmp_path):
    result = run_cli("validate", "missing.jsonl", cwd=tmp_path)
    assert result.returncode == 1 and "does not exist" in result.stderr


def test_audit_rebalance_records_every_drop(tmp_path):
    out = tmp_path / "a"
    result = run_cli(
        "audit", "synthetic:n=400,bias=0.6", "--out", str(out), "--policy", "rebalance", "--json", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    summary = last_json(result)
    assert summary["flagged"] is True and summary["removed"] > 0
    assert abs(summary["after"]["chosen_longer_fraction"] - 0.5) <= 0.05
    quarantined = [json.loads(line) for line in (out / "quarantine.jsonl").read_text().splitlines()]
    assert len(quarantined) == summary["removed"] and {q["reasons"][0] for q in quarantined} == {"length_rebalance"}
    assert len(pd.read_parquet(out / "valid.parquet")) + len(quarantined) == 400
    for kind in ("json", "markdown", "png"):
        assert (tmp_path / summary["paths"][kind]).exists()


def test_audit_fail_policy_exits_non_zero(tmp_path):
    result = run_cli("audit", "synthetic:n=200,bias=1", "--out", str(tmp_path / "a"), "--policy", "fail", cwd=tmp_path)
    assert result.returncode == 1 and "length bias: chosen longer wins: length_only_accuracy=1.000" in result.stderr


def test_audit_reads_trust_remote_code(tmp_path):
    result = run_cli("audit", "synthetic:n=40", "--out", str(tmp_path / "a"), "--trust-remote-code", cwd=tmp_path)
    assert result.returncode == 0 and "trust_remote_code is ON" in result.stderr


def test_audit_flags_a_shorter_wins_bias_and_passes_balanced_data(tmp_path):
    """Chosen shorter in 90 % of pairs predicts the label as well as chosen longer does."""
    summaries = {}
    for bias in ("-0.8", "0.0"):  # chosen longer with probability (1 + bias) / 2: 10 % and 50 %
        data = tmp_path / f"bias{bias}.jsonl"
        made = run_cli(
            "demo-data", "--out", str(data), "--n", "400", "--length-bias", bias, "--seed", "2", cwd=tmp_path
        )
        assert made.returncode == 0, made.stderr
        result = run_cli("audit", str(data), "--out", str(tmp_path / f"audit{bias}"), "--json", cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        summaries[bias] = last_json(result)
    shorter, balanced = summaries["-0.8"], summaries["0.0"]
    assert shorter["flagged"] is True and shorter["bias_direction"] == "chosen shorter"
    assert shorter["length_only_accuracy"] < 0.2 and shorter["length_bias_strength"] > 0.8
    assert balanced["flagged"] is False and balanced["length_bias_strength"] < 0.6
