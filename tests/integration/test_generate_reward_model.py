"""`simpo generate` end to end with a reward-model judge (a tiny one built from a config)."""

import json
import subprocess
import sys


def test_generate_with_a_reward_model_judge_writes_pairs_validate_accepts(
    tiny_model_dir, tiny_reward_model_dir, tmp_path
):
    judge = tiny_reward_model_dir
    out = tmp_path / "pairs.jsonl"
    command = [
        sys.executable, "-m", "flows.cli", "generate", "--prompts", "synthetic:n=8,seed=1",
        "--generator", str(tiny_model_dir), "--out", str(out), "--samples", "2", "--max-new-tokens", "12",
        "--judge", "reward-model", "--judge-model", str(judge), "--json",
    ]  # fmt: skip
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["ok"] is True and summary["judge"]["name"] == "reward-model"
    assert summary["judge"]["identity"].startswith("folder:")  # the reward model's content
    assert summary["pairs"] + sum(summary["dropped"].values()) == 8 and summary["pairs"] > 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert all(row["chosen_score"] > row["rejected_score"] for row in rows)
    assert all(row["generator"]["source"] == str(tiny_model_dir) for row in rows)

    validated = subprocess.run(
        [sys.executable, "-m", "flows.cli", "validate", str(out), "--out", str(tmp_path / "v"), "--json"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert validated.returncode == 0, validated.stderr[-2000:]
    assert json.loads(validated.stdout.strip().splitlines()[-1])["valid"] == summary["pairs"]
