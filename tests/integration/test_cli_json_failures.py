"""A data command that fails with --json still ends with one JSON object: ok false, the error,
the failed step and what was done before; a success carries ok true."""

import json
import subprocess
import sys

GOOD = '{"prompt": "List some fruit words.", "chosen": "Apple, pear.", "rejected": "Dog."}'


def run_cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], capture_output=True, text=True, cwd=cwd)


def last_json(result):
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_validate_over_the_invalid_fraction_reports_the_failure_with_its_counts(tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text(GOOD + "\nnot json\n")
    result = run_cli("validate", str(data), "--out", str(tmp_path / "v"), "--json", cwd=tmp_path)
    assert result.returncode == 1
    failure = last_json(result)
    assert failure["ok"] is False and failure["failed_step"] == "validate-preferences"
    assert failure["error"].startswith("DataError: 1 of 2 rows (50.0%) failed validation")
    assert (failure["total"], failure["valid"], failure["quarantined"]) == (2, 1, 1)  # the summary's fields
    passed = run_cli(
        "validate", str(data), "--out", str(tmp_path / "v"), "--max-invalid-fraction", "0.5", "--json", cwd=tmp_path
    )
    assert passed.returncode == 0 and last_json(passed)["ok"] is True


def test_audit_refuses_a_source_without_a_valid_pair(tmp_path):
    """Every row quarantined (and accepted as such): no length balance to call "ok"."""
    data = tmp_path / "d.jsonl"
    data.write_text("not json\n{also not json\n")
    result = run_cli(
        "audit", str(data), "--out", str(tmp_path / "a"), "--max-invalid-fraction", "1", "--json", cwd=tmp_path
    )
    assert result.returncode == 1
    assert "no valid pair to audit: all 2 records" in result.stderr and "length balance ok" not in result.stderr
    failure = last_json(result)
    assert failure["ok"] is False and failure["failed_step"] == "audit-length-balance"
    assert failure["validation"] == {"total": 2, "valid": 0, "quarantined": 2, "reasons": {"invalid_json": 2}}
    assert failure["quarantine_path"].endswith("quarantine.jsonl")

    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    nothing = run_cli("audit", str(empty), "--out", str(tmp_path / "e"), "--json", cwd=tmp_path)
    assert nothing.returncode == 1 and "holds no records" in last_json(nothing)["error"]
