"""The SFT stage on the tiny model: it learns, packed equals padded, and the `tiny` build is
cached and built once by processes starting together."""

import json
import subprocess
import sys

import pytest
import torch

from simpo_core.data.sft_data import generate_format_rows
from simpo_core.models import load_model_and_tokenizer, read_base_model
from simpo_core.train.events import TrainerEvents
from simpo_core.train.logps import packed_attention, sequence_logps
from simpo_core.train.sft import collate_rows, encode_rows, sft_train
from simpo_core.train.sft_settings import SFTSettings
from simpo_core.train.tiny_sft import TINY_SFT_MARKER


class LoggedSteps(TrainerEvents):
    def __init__(self):
        self.entries = []

    def on_log(self, step, metrics):
        self.entries.append((step, metrics))


@pytest.fixture
def scratch(tiny_model_dir):
    return load_model_and_tokenizer(str(tiny_model_dir))


def test_packed_and_padded_batches_give_the_same_log_probs(scratch):
    model, tokenizer = scratch
    examples = encode_rows(tokenizer, generate_format_rows(4, seed=1), max_length=256, max_prompt_length=128)
    with torch.no_grad():
        padded = sequence_logps(model, collate_rows(examples, packed=False, pad_token_id=tokenizer.pad_token_id))
        with packed_attention(model):
            packed = sequence_logps(model, collate_rows(examples, packed=True, pad_token_id=tokenizer.pad_token_id))
    torch.testing.assert_close(packed[0], padded[0], rtol=1e-4, atol=1e-4)
    assert packed[1].tolist() == padded[1].tolist() == [len(response) for _, response in examples]


def test_sft_lowers_the_loss_and_leaves_the_model_as_it_was_set_up(scratch):
    model, tokenizer = scratch
    rows = generate_format_rows(64, seed=2)
    settings = SFTSettings(max_steps=24, batch_size=8, logging_steps=8, warmup_ratio=0.0, lr_scheduler="constant")
    logged = LoggedSteps()
    result = sft_train(model, tokenizer, rows, settings, callbacks=[logged])
    losses = [entry["loss"] for entry in result.history]
    print(f"\nSFT loss by 8 steps: {losses}")
    assert [entry["step"] for entry in result.history] == [8, 16, 24]
    assert logged.entries == [(entry["step"], entry) for entry in result.history]
    # From ln(384) = 5.95 nats (a uniform guess over the byte ids) to under 3: letters, commas,
    # spaces and the final period are already likelier than the other ids after 24 steps.
    assert losses[0] > 3.5 and losses[-1] < 3.0
    assert result.model is model and not model.training
    assert model.config._attn_implementation == "sdpa"  # packing was switched off again


def test_tiny_sft_build_is_cached_and_built_once_by_concurrent_processes(tiny_model_dir, tmp_path):
    """Two processes asking for the SFT'd build at once: one trains (the other waits on the
    lock and reuses it), no partial folder is left, and a third call returns the cache."""
    target = tmp_path / "tiny-sft"
    code = (
        "import logging, sys; logging.basicConfig(level=logging.INFO, stream=sys.stderr)\n"
        "from simpo_core.train import sft, tiny_sft\n"
        "tiny_sft.TINY_SFT_ROWS = 16\n"
        "tiny_sft.TINY_SFT_SETTINGS = sft.SFTSettings(max_steps=2, batch_size=2)\n"
        f"tiny_sft.save_tiny_sft({str(target)!r}, scratch={str(tiny_model_dir)!r})\n"
    )
    processes = [subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True) for _ in range(2)]
    logs = [process.communicate(timeout=120)[1] for process in processes]
    assert [process.returncode for process in processes] == [0, 0], logs
    assert sum(log.count("SFT of the tiny model: 2 steps") for log in logs) == 1
    assert sorted(path.name for path in tmp_path.iterdir()) == [".tiny-sft.lock", "tiny-sft"]
    record = json.loads((target / TINY_SFT_MARKER).read_text())
    assert record["recipe"]["rows"] == 16 and record["recipe"]["settings"]["max_steps"] == 2
    assert read_base_model(target) == "tiny-scratch" and (target / "model.safetensors").is_file()
    model, _ = load_model_and_tokenizer(str(target))
    assert model.num_parameters() > 0


def test_simpo_sft_writes_a_model_that_simpo_run_accepts(tiny_model_dir, tmp_path, monkeypatch, capsys):
    """`simpo sft` on a preference file (chosen answers) from `tiny-scratch`: the folder loads,
    names its starting model, and passes the flow's source check as `model.source`."""
    import shutil

    from flows.cli import main
    from flows.params import check_sources, load_params
    from simpo_core.data.synthetic import generate_pairs, write_jsonl

    monkeypatch.chdir(tmp_path)
    shutil.copytree(tiny_model_dir, tmp_path / ".simpo" / "models" / "tiny")  # `tiny-scratch`, built once
    data = write_jsonl(generate_pairs(12, seed=5), tmp_path / "pairs.jsonl")
    out = tmp_path / "sft-model"
    argv = ["sft", "--data", str(data), "--out", str(out), "--max-steps", "3", "--batch-size", "4", "--json"]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (summary["rows"], summary["steps"], summary["model"]) == (12, 3, "tiny-scratch")
    assert summary["final_loss"] > 0 and len(summary["data_sha256"]) == 64
    assert read_base_model(out) == "tiny-scratch"
    assert json.loads((out / "sft_run.json").read_text())["job"]["sft"]["max_steps"] == 3
    params = load_params(None, [f"model.source={out}"])
    check_sources(params)
    assert params.train.lr == 1e-6  # a folder is not an embedded model: the paper's defaults apply

    assert main(["sft", "--data", str(data)]) == 1
    assert "simpo sft needs --out" in capsys.readouterr().err
