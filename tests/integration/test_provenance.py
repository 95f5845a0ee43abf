import json
import shutil
import subprocess
import sys

from simpo_core.data.synthetic import generate_pairs, write_jsonl
from simpo_core.models import read_base_model, write_provenance


def test_trained_folder_names_its_starting_model_and_evaluate_compares_with_it(tiny_model_dir, tmp_path):
    trained = tmp_path / "trained"
    shutil.copytree(tiny_model_dir, trained)
    write_provenance(trained, str(tiny_model_dir))
    assert read_base_model(trained) == str(tiny_model_dir.resolve())
    assert read_base_model(tiny_model_dir) is None

    data = write_jsonl(generate_pairs(8, seed=3), tmp_path / "heldout.jsonl")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "flows.cli",
            "evaluate",
            "--model",
            str(trained),
            "--data",
            str(data),
            "--generation-samples",
            "0",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["base_model"] == str(tiny_model_dir.resolve())
    assert summary["heldout"]["base"]["reward_accuracy"] == summary["heldout"]["trained"]["reward_accuracy"]
