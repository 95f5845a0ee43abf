import logging

import pandas as pd
import pytest

from flows.cli import main
from simpo_core.data.synthetic import generate_pairs, write_jsonl


def _write_config(tmp_path, text):
    path = tmp_path / "train.yaml"
    path.write_text(text)
    return path


def test_simpo_train_writes_the_final_model_and_resumes(tiny_model_dir, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    write_jsonl(generate_pairs(24, seed=12), tmp_path / "train.jsonl")
    rows = generate_pairs(4, seed=13)
    pd.DataFrame(
        {
            "prompt": [[{"role": "user", "content": r["prompt"]}] for r in rows],
            "chosen": [r["chosen"] for r in rows],
            "rejected": [r["rejected"] for r in rows],
        }
    ).to_parquet(tmp_path / "heldout.parquet")
    config = _write_config(
        tmp_path,
        f"""
model: {tiny_model_dir}
train_data: train.jsonl
eval_data: heldout.parquet
simpo:
  preset: tiny
  max_steps: 4
  save_steps: 2
  logging_steps: 2
  output_dir: {tmp_path / "out"}
""",
    )
    assert main(["train", "--config", str(config)]) == 0
    assert (tmp_path / "out" / "final" / "model.safetensors").exists()
    assert (tmp_path / "out" / "checkpoint-4" / "trainer_state.json").exists()
    assert "step 2/4" in caplog.text and "eval_acc" in caplog.text and "model saved to" in caplog.text
    caplog.clear()
    assert main(["train", "--config", str(config), "--resume"]) == 0  # nothing left to train: saves again
    assert "resumed from" in caplog.text and "step 2/4" not in caplog.text


def test_unknown_simpo_key_fails_and_names_it(tmp_path, capsys):
    write_jsonl(generate_pairs(2, seed=1), tmp_path / "train.jsonl")
    config = _write_config(tmp_path, "model: tiny\ntrain_data: train.jsonl\nsimpo:\n  learning_rate: 1.0e-3\n")
    assert main(["train", "--config", str(config)]) == 1
    assert "unknown key 'learning_rate'" in capsys.readouterr().err


@pytest.mark.parametrize(
    "text, message",
    [
        ("model: tiny\ntrain_data: train.jsonl\nepochs: 2\n", "unknown key 'epochs'"),
        ("model: tiny\n", "missing 'train_data'"),
        ("model: tiny\ntrain_data: nope.jsonl\n", "does not exist"),
        (
            "model: tiny\ntrain_data: train.jsonl\nsimpo:\n  max_length: 64\n  max_prompt_length: 64\n",
            "max_prompt_length",
        ),
    ],
)
def test_bad_configs_exit_non_zero_with_a_clear_message(tmp_path, capsys, text, message):
    write_jsonl(generate_pairs(2, seed=1), tmp_path / "train.jsonl")
    assert main(["train", "--config", str(_write_config(tmp_path, text))]) == 1
    assert message in capsys.readouterr().err
