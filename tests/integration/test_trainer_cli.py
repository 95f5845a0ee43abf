import logging

import pandas as pd
import pytest

from flows.cli import main
from simpo_core.data.synthetic import generate_pairs, write_jsonl
from simpo_core.train.config import SimPOConfig


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
train:
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


def test_unknown_train_key_fails_and_names_it(tmp_path, capsys):
    write_jsonl(generate_pairs(2, seed=1), tmp_path / "train.jsonl")
    config = _write_config(tmp_path, "model: tiny\ntrain_data: train.jsonl\ntrain:\n  learning_rate: 1.0e-3\n")
    assert main(["train", "--config", str(config)]) == 1
    assert "unknown key 'learning_rate'" in capsys.readouterr().err


def test_set_overrides_the_job_by_dotted_path(tmp_path, tiny_model_dir):
    """`--set` reads values as YAML and addresses any key: the group's fields and the model."""
    from simpo_core.train.worker import read_job

    write_jsonl(generate_pairs(2, seed=1), tmp_path / "train.jsonl")
    config = _write_config(tmp_path, "model: tiny\ntrain_data: train.jsonl\ntrain:\n  beta: 2.5\n  max_steps: 7\n")
    job = read_job(config, ["train.beta=3", "train.lora={r: 4}", f"model={tiny_model_dir}"])
    assert (job.config.beta, job.config.max_steps, job.config.lora.r) == (3.0, 7, 4)
    assert job.model == str(tiny_model_dir) and job.config.preset == "none"  # a folder has no preset of its own


def test_the_train_group_follows_the_models_preset_as_the_flow_does(tmp_path):
    from flows.params import load_params
    from simpo_core.train.worker import read_job

    write_jsonl(generate_pairs(2, seed=1), tmp_path / "train.jsonl")
    config = _write_config(tmp_path, "model: tiny\ntrain_data: train.jsonl\ntrain:\n  max_steps: 5\n")
    from_job = read_job(config).config
    from_flow = load_params(None, ["train.max_steps=5"]).train
    assert from_job.model_dump(exclude={"output_dir"}) == from_flow.model_dump(exclude={"output_dir"})
    assert from_job.preset == "tiny"


def test_a_simpo_group_still_works_with_a_warning_and_its_old_meaning(tmp_path, caplog):
    """The former name trains as before: no automatic preset (the library's lr, 1e-6) unless
    it names one; the warning says what to rename."""
    from simpo_core.train.worker import read_job

    write_jsonl(generate_pairs(2, seed=1), tmp_path / "train.jsonl")
    config = _write_config(tmp_path, "model: tiny\ntrain_data: train.jsonl\nsimpo:\n  max_steps: 5\n")
    with caplog.at_level(logging.WARNING, logger="simpo_core.train.job_file"):
        job = read_job(config, ["train.beta=3"])
    assert (job.config.lr, job.config.max_steps, job.config.beta) == (1e-6, 5, 3.0)
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 1 and "'simpo:' is now named 'train:'" in warnings[0]
    named = _write_config(tmp_path, "model: tiny\ntrain_data: train.jsonl\nsimpo:\n  preset: tiny\n")
    assert read_job(named).config.lr == SimPOConfig.for_tiny().lr


@pytest.mark.parametrize(
    "text, message",
    [
        ("model: tiny\ntrain_data: train.jsonl\nepochs: 2\n", "unknown key 'epochs'"),
        ("model: tiny\n", "missing 'train_data'"),
        ("model: tiny\ntrain_data: nope.jsonl\n", "does not exist"),
        (
            "model: tiny\ntrain_data: train.jsonl\ntrain:\n  max_length: 64\n  max_prompt_length: 64\n",
            "max_prompt_length",
        ),
        ("model: tiny\ntrain_data: train.jsonl\ntrain: {}\nsimpo: {}\n", "both 'train:' and 'simpo:'"),
        ("model: tiny\ntrain_data: train.jsonl\ntrain: [beta]\n", "'train' must be a mapping"),
    ],
)
def test_bad_configs_exit_non_zero_with_a_clear_message(tmp_path, capsys, text, message):
    write_jsonl(generate_pairs(2, seed=1), tmp_path / "train.jsonl")
    assert main(["train", "--config", str(_write_config(tmp_path, text))]) == 1
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.beta=0", "(train):\n  beta: Input should be greater than 0"),
        ("train.betta=3", "unknown key 'betta'"),
        ("train.beta", "KEY=VALUE"),
        ("model.source=tiny", "'model' is a value, not a group"),
    ],
)
def test_bad_overrides_exit_non_zero_naming_the_key(tmp_path, capsys, override, message):
    write_jsonl(generate_pairs(2, seed=1), tmp_path / "train.jsonl")
    config = _write_config(tmp_path, "model: tiny\ntrain_data: train.jsonl\n")
    assert main(["train", "--config", str(config), "--set", override]) == 1
    assert message in capsys.readouterr().err
