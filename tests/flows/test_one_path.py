"""The CLI and the flow run each step through the same simpo_core function."""

import json
from pathlib import Path

from simpo_core.data.synthetic import generate_pairs


def write_mixed_source(path: Path) -> Path:
    """400 good pairs and 8 bad records of several kinds (2 % invalid, under the 5 % limit)."""
    lines = [json.dumps(pair) for pair in generate_pairs(400, seed=3)]
    lines[10] = "{not json"
    lines[50] = json.dumps({"prompt": "q", "chosen": "same", "rejected": "same"})
    lines[90] = json.dumps({"prompt": "q", "chosen": "a"})
    lines[130] = lines[131]
    lines += ['"a string"', json.dumps({"prompt": "", "chosen": "a", "rejected": "b"})] * 2
    path.write_text("\n".join(lines) + "\n")
    return path


def test_flow_validation_and_simpo_validate_write_identical_files(run_flow, tmp_path, capsys):
    from flows.cli import main

    source = write_mixed_source(tmp_path / "mixed.jsonl")
    summary = run_flow(f"data.source={source}", "train.max_steps=0", "eval.generation_samples=0")
    assert main(["validate", str(source), "--out", str(tmp_path / "cli"), "--json"]) == 0
    cli = json.loads(capsys.readouterr().out.strip().splitlines()[-1])

    flow_dir = Path(summary["run_dir"]) / "data"
    for name in ("valid.parquet", "quarantine.jsonl"):
        assert (flow_dir / name).read_bytes() == (tmp_path / "cli" / name).read_bytes(), name
    assert cli["quarantined"] == summary["validation"]["quarantined"] == 8
    assert cli["reasons"] == summary["validation"]["reasons"]
