import json
import subprocess
import sys

import pytest

from flows.cli import COMMANDS, main


def run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], capture_output=True, text=True, cwd=cwd)


def test_help_lists_every_command():
    result = run_cli("--help")
    assert result.returncode == 0
    for name in COMMANDS:
        assert name in result.stdout


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_has_help(name, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([name, "--help"])
    assert exit_info.value.code == 0
    assert name in capsys.readouterr().out


def test_demo_data_writes_rows_and_json_summary(tmp_path):
    out = tmp_path / "d.jsonl"
    result = run_cli("demo-data", "--out", str(out), "--n", "200", "--length-bias", "1", "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 200 == summary["pairs"]
    assert all(len(r["chosen"]) > len(r["rejected"]) for r in rows)
    assert summary["chosen_longer_fraction"] == 1.0


def test_bad_length_bias_is_a_clear_error(tmp_path):
    result = run_cli("demo-data", "--out", str(tmp_path / "d.jsonl"), "--length-bias", "3")
    assert result.returncode == 1
    assert "length_bias must be in [-1, 1]" in result.stderr


def test_run_report_shows_base_vs_trained_and_the_decision():
    from flows.commands.run import describe_run

    block = {
        "reward_accuracy": 0.5,
        "length_controlled_accuracy": None,
        "reward_margin": 0.01,
        "length_reward_correlation": 0.1,
    }
    summary = {
        "validation": {"valid": 9, "total": 10, "quarantined": 1, "quarantine_path": "q.jsonl"},
        "audit": {
            "length_only_accuracy": 0.5,
            "bias_direction": "none",
            "flagged": False,
            "policy": "warn",
            "removed": 0,
        },
        "heldout": {"pairs": 4, "base": block, "trained": {**block, "reward_accuracy": 0.75}},
        "train_steps": 3,
        "model_dir": "m",
        "skipped": False,
        "resumed_from_step": 2,
        "reused_training": False,
        "registered_model_name": "simpo-policy",
        "model_version": "2",
        "promoted": False,
        "promotion_reason": "no gain",
        "mlflow_run_id": "r",
        "flow_run_id": "f",
    }
    report = describe_run(summary)
    assert "reward_accuracy                 0.500      0.750" in report
    assert "length_controlled_accuracy        n/a        n/a" in report
    assert "simpo-policy v2 not promoted: no gain" in report
    assert "trained (resumed from step 2) 3 steps -> m" in report
    skipped = describe_run({**summary, "skipped": True, "skip_reason": "unchanged: simpo-policy v2 was trained..."})
    assert "skipped   unchanged: simpo-policy v2" in skipped and "held-out" not in skipped


def test_serve_without_a_prefect_server_says_how_to_start_one(monkeypatch, capsys):
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    assert main(["serve"]) == 1
    assert "prefect server start --host 127.0.0.1" in capsys.readouterr().err


def test_run_refuses_a_bad_local_data_source_before_any_server_starts(tmp_path, capsys, monkeypatch):
    import time

    from flows.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "passwd").write_text("root:x:0:0\n")
    for source, message in (
        ("nonexistent.json", "data file nonexistent.json does not exist"),
        (str(tmp_path / "passwd"), "unsupported file type '(none)'"),
    ):
        started = time.monotonic()
        assert main(["run", "--data", source]) == 1
        assert time.monotonic() - started < 5  # no Prefect server, no MLflow store
        assert message in capsys.readouterr().err
    assert not (tmp_path / ".simpo" / "mlflow.db").exists()
