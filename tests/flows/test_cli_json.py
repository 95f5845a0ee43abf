"""`simpo run --json` whose flow run fails still ends with one JSON object: the failed step as
the failure alert names it, the error, the run ids and what was done before."""

import json

from mlflow import MlflowClient

GOOD = '{"prompt": "List some fruit words.", "chosen": "Apple, pear.", "rejected": "Dog."}'


def test_a_failed_run_prints_its_failure_as_json(prefect_harness, tmp_path, monkeypatch, capsys):
    from flows.cli import main

    monkeypatch.chdir(tmp_path)
    data = tmp_path / "bad.jsonl"
    data.write_text("\n".join([GOOD] + ["{not json"] * 4) + "\n")  # 4 of 5 rows bad: over the 5 % limit
    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = ["run", "--data", str(data), "--model", "tiny-scratch", "--max-invalid-fraction", "0.05"]
    args += ["--output-dir", str(tmp_path / "runs"), "--tracking-uri", tracking_uri, "--json"]
    assert main(args) == 1
    output = capsys.readouterr()
    assert "error: 4 of 5 rows (80.0%) failed validation" in output.err
    failure = json.loads(output.out.strip().splitlines()[-1])

    assert failure["ok"] is False and failure["failed_step"] == "validate-preferences"
    assert failure["error"].startswith("DataError: 4 of 5 rows (80.0%) failed validation")
    assert failure["completed_steps"] == ["start-tracking", "load-preferences"]
    assert (failure["validation"]["total"], failure["validation"]["quarantined"]) == (5, 4)
    run = MlflowClient(tracking_uri=tracking_uri).get_run(failure["mlflow_run_id"])
    assert run.info.status == "FAILED"
    assert run.data.tags["flow_run_id"] == failure["flow_run_id"]
    assert run.data.tags["failure.step"].startswith(failure["failed_step"])  # the alert's step, same task
    assert failure["run_dir"].endswith(failure["flow_run_id"])
