import json
import subprocess
import sys

import pytest

from flows.cli import COMMANDS, main


def run_cli(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", *args], capture_output=True, text=True, cwd=cwd
    )


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
