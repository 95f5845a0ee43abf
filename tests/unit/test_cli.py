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
    assert summary["ok"] is True
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
    from flows.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "passwd").write_text("root:x:0:0\n")
    for source, message in (
        ("nonexistent.json", "data file nonexistent.json does not exist"),
        (str(tmp_path / "passwd"), "unsupported file type '(none)'"),
    ):
        assert main(["run", "--data", source, "--json"]) == 1
        output = capsys.readouterr()
        assert message in output.err
        failure = json.loads(output.out.strip().splitlines()[-1])
        assert failure["ok"] is False and failure["failed_step"] == "check-sources"
        assert failure["error"].startswith("DataError: ") and message in failure["error"]
    assert not (tmp_path / ".simpo" / "mlflow.db").exists()  # no MLflow store was opened


@pytest.mark.parametrize("command", ["run", "sweep"])
def test_flow_commands_take_the_data_step_options_of_validate_and_audit(command):
    """The validation and audit messages name --format, --max-invalid-fraction, --policy and
    --threshold: the commands that run those steps take them, as the flow parameters they set."""
    from flows.cli import build_parser
    from flows.commands._common import FLAG_TO_PARAM, flow_overrides
    from flows.commands.sweep import SWEEP_FLAGS, load_sweep_params

    options = ["--format", "sharegpt", "--max-invalid-fraction", "0.2", "--policy", "fail", "--threshold", "0.7"]
    args = build_parser().parse_args([command, *options, "--set", "data.heldout_fraction=0.2"])
    flags = {**FLAG_TO_PARAM, **SWEEP_FLAGS} if command == "sweep" else FLAG_TO_PARAM
    params, _ = load_sweep_params(None, flow_overrides(args, flags))  # the flow's groups, as `run` loads them
    assert (params.data.format, params.data.max_invalid_fraction) == ("sharegpt", 0.2)
    assert (params.audit.policy, params.audit.threshold) == ("fail", 0.7)
    assert params.data.heldout_fraction == 0.2


def test_a_usage_error_with_json_still_ends_with_a_json_object(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["validate", "data.jsonl", "--json", "--max-invalid-fraction", "half"])
    assert exit_info.value.code == 2
    output = capsys.readouterr()
    failure = json.loads(output.out.strip().splitlines()[-1])
    assert failure["ok"] is False and failure["failed_step"] == "arguments"
    assert "--max-invalid-fraction" in failure["error"] and "invalid float value: 'half'" in failure["error"]
    assert "usage: simpo validate" in output.err


def test_an_unexpected_error_with_json_reports_it_and_keeps_the_traceback(monkeypatch, capsys):
    from flows.commands import demo_data

    def broken(args):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(demo_data, "main", broken)
    with pytest.raises(RuntimeError, match="disk on fire"):
        main(["demo-data", "--out", "unused.jsonl", "--json"])
    failure = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert failure == {"ok": False, "error": "RuntimeError: disk on fire", "failed_step": "demo-data"}


def test_failure_details_recorded_closest_to_the_failure_win():
    from flows.commands._failure import failure_summary, record_failure, step
    from simpo_core.errors import DataError

    with pytest.raises(DataError) as raised:
        with step("outer", validation={"total": 3}):
            error = DataError("bad rows in https://user:secret@example.com/data")
            record_failure(error, failed_step="validate-preferences")
            raise error
    summary = failure_summary(raised.value, "run")
    assert summary["failed_step"] == "validate-preferences" and summary["validation"] == {"total": 3}
    assert "secret" not in summary["error"] and summary["error"].startswith("DataError: bad rows")
