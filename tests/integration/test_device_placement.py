"""Every stage that runs a model puts it on the configured device and honours
trust_remote_code and adapter-only folders (CPU-testable: fake CUDA, meta device, spies)."""

import shutil

import pandas as pd
import pytest
import torch

import simpo_core.models as models
from simpo_core.data.synthetic import generate_pairs
from simpo_core.eval.settings import EvalSettings
from simpo_core.tiny_model import TINY_ARCHITECTURE
from simpo_core.train.config import LoraSettings, SimPOConfig
from simpo_core.train.trainer import SimPOTrainer


class Stop(Exception):
    """Raised by a spy once it has seen what it was waiting for."""


@pytest.fixture(autouse=True)
def two_threads():
    torch.set_num_threads(2)


@pytest.fixture
def load_calls(monkeypatch):
    """Record the keyword arguments of every load_model_and_tokenizer call, then load on the CPU."""
    calls, real = [], models.load_model_and_tokenizer

    def spy(source, **kwargs):
        calls.append({"source": source, **kwargs})
        return real(source, **{**kwargs, "device": "cpu", "trust_remote_code": False})

    monkeypatch.setattr(models, "load_model_and_tokenizer", spy)
    return calls


@pytest.fixture(scope="module")
def adapter_dir(tiny_model_dir, tmp_path_factory):
    """A LoRA adapter saved alone (`merge_on_save: false`) after a few steps, and its trainer."""
    model, tokenizer = models.load_model_and_tokenizer(str(tiny_model_dir))
    out = tmp_path_factory.mktemp("adapter")
    lora = LoraSettings(r=4, alpha=8, merge_on_save=False)
    config = SimPOConfig.for_tiny(lora=lora, max_steps=3, output_dir=out, save_steps=0, eval_steps=0)
    trainer = SimPOTrainer(model, config, tokenizer=tokenizer, train_dataset=generate_pairs(24, seed=2))
    trainer.train()
    return trainer.save_model(str(out / "final")), trainer


def test_loading_places_the_model_on_the_resolved_device(tiny_model_dir, monkeypatch):
    seen = []
    monkeypatch.setattr(models, "resolve_device", lambda device: seen.append(device) or torch.device("meta"))
    model, _ = models.load_model_and_tokenizer(str(tiny_model_dir), device="cuda:1")
    assert seen == ["cuda:1"] and next(model.parameters()).device.type == "meta"


def test_training_stays_on_an_explicit_cpu_even_with_a_gpu(tiny_model_dir, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # auto would move the model to CUDA
    model, tokenizer = models.load_model_and_tokenizer(str(tiny_model_dir))
    trainer = SimPOTrainer(model, SimPOConfig.for_tiny(max_steps=1), tokenizer=tokenizer, device="cpu")
    assert trainer.device.type == "cpu" and trainer.precision == "fp32"


def test_training_job_loads_with_its_device_and_remote_code(tiny_model_dir, tmp_path, monkeypatch):
    from simpo_core.train import worker

    (tmp_path / "train.jsonl").write_text("")
    job = worker.TrainJob(str(tiny_model_dir), tmp_path / "train.jsonl", None, SimPOConfig(), True, "cpu")
    placed = []
    monkeypatch.setattr(worker, "read_pairs", lambda path: generate_pairs(8, seed=1))
    monkeypatch.setattr(models, "load_tokenizer", lambda source, trust: placed.append(trust) or _tokenizer(source))
    monkeypatch.setattr(SimPOTrainer, "__init__", lambda self, *a, device=None, **k: placed.append(device))
    worker.build_trainer(job)
    assert placed == [True, "cpu"]


def _tokenizer(source):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(source)


def test_evaluation_loads_both_models_with_the_settings(tiny_model_dir, load_calls):
    from simpo_core.eval.saved import evaluate_saved

    settings = EvalSettings(device="cuda:1", trust_remote_code=True, generation_samples=0, judge="none")
    evaluate_saved(str(tiny_model_dir), generate_pairs(4, seed=1), settings, base_source=str(tiny_model_dir))
    assert [(c["device"], c["trust_remote_code"]) for c in load_calls] == [("cuda:1", True), ("cuda:1", True)]


def test_reward_model_judge_runs_on_the_evaluation_device(tiny_model_dir, tmp_path, monkeypatch):
    from transformers import LlamaConfig, LlamaForSequenceClassification

    from simpo_core.eval.judges import build_judge

    tokenizer = _tokenizer(tiny_model_dir)
    config = LlamaConfig(vocab_size=len(tokenizer), num_labels=1, pad_token_id=0, **TINY_ARCHITECTURE)
    LlamaForSequenceClassification(config).save_pretrained(tmp_path / "rm")
    tokenizer.save_pretrained(tmp_path / "rm")
    seen = []
    monkeypatch.setattr(models, "resolve_device", lambda device: seen.append(device) or torch.device("cpu"))
    build_judge("reward-model", reward_model_path=str(tmp_path / "rm"), batch_size=2, max_length=64, device="cuda:1")
    assert seen == ["cuda:1"]


def test_adapter_only_folder_loads_as_base_plus_adapter(adapter_dir):
    folder, trainer = adapter_dir
    assert models.is_adapter_folder(folder)
    merged, tokenizer = models.load_model_and_tokenizer(folder)
    ids = torch.tensor([tokenizer("List some fruit words.")["input_ids"]])
    trainer.model.eval()
    with torch.no_grad():
        torch.testing.assert_close(merged(ids).logits, trainer.model(ids).logits, rtol=1e-4, atol=1e-4)


def test_adapter_only_model_is_evaluated(adapter_dir, tiny_model_dir):
    from simpo_core.eval.saved import evaluate_saved

    settings = EvalSettings(generation_samples=1, judge="none", max_new_tokens=4)
    heldout = evaluate_saved(adapter_dir[0], generate_pairs(4, seed=1), settings, base_source=str(tiny_model_dir))
    assert heldout.heldout["trained"]["pairs"] == 4
    assert heldout.heldout["trained"]["logps_chosen"] != heldout.heldout["base"]["logps_chosen"]


def test_champion_is_re_evaluated_on_the_device_with_its_logged_base(adapter_dir, tiny_model_dir, tmp_path, load_calls):
    from types import SimpleNamespace

    from tasks.promotion import evaluate_champion

    logged = tmp_path / "logged"
    shutil.copytree(adapter_dir[0], logged / "artifacts" / "final")
    shutil.copytree(tiny_model_dir, logged / "artifacts" / "base_model")
    (logged / "MLmodel").write_text(
        "flavors:\n  python_function:\n    artifacts:\n      model_dir:\n        path: artifacts/final\n"
    )
    pd.DataFrame(generate_pairs(4, seed=1)).to_parquet(tmp_path / "heldout.parquet")
    settings = EvalSettings(device="cuda:0", trust_remote_code=True, generation_samples=0, judge="none")
    block = evaluate_champion(SimpleNamespace(source=str(logged)), tmp_path / "heldout.parquet", settings, "")
    (call,) = load_calls
    assert call["device"] == "cuda:0" and call["trust_remote_code"] is True
    assert call["source"].endswith("final") and call["base"].endswith("base_model")
    assert block["pairs"] == 4
