"""QLoRA on the CPU: the embedded tiny model loaded in 4 bits (or 8), LoRA trained through the
worker's path (`build_trainer` + `finish_training`, what `simpo train` and the flow's task run)."""

import math

import pytest
import torch

from simpo_core.data.synthetic import generate_pairs, write_jsonl
from simpo_core.models import is_adapter_folder, load_model_and_tokenizer
from simpo_core.train.config import LoraSettings, SimPOConfig
from simpo_core.train.quantized import load_options
from simpo_core.train.worker import TrainJob, build_trainer, finish_training, read_job

bnb = pytest.importorskip("bitsandbytes")

LAYER_TYPES = {"4bit": "Linear4bit", "8bit": "Linear8bitLt"}


def _job(model_dir, folder, quantization):
    write_jsonl(generate_pairs(16, seed=3), folder / "train.jsonl")
    config = SimPOConfig.preset(
        "tiny-scratch",
        max_steps=3,
        lr=1e-2,
        warmup_ratio=0.0,  # every step moves the adapter
        save_steps=0,
        eval_steps=0,
        lora=LoraSettings(r=8, alpha=16, dropout=0.0, target_modules=["q_proj", "v_proj"]),  # merge_on_save: default
        output_dir=folder / "out",
    )
    job = TrainJob(str(model_dir), folder / "train.jsonl", None, config, device="cpu", quantization=quantization)
    return read_job(job.write(folder / "job.yaml"))  # the YAML key `simpo train --config` reads


def _q_proj(model):
    return model.base_model.model.model.layers[0].self_attn.q_proj


def _logits(model):
    input_ids = torch.randint(0, 200, (2, 16), generator=torch.Generator().manual_seed(0))
    model.eval()
    with torch.no_grad():
        return model(input_ids=input_ids).logits.float()


@pytest.fixture(scope="module", params=["4bit", "8bit"])
def trained(request, tiny_model_dir, tmp_path_factory):
    """One short QLoRA training per quantization, with its weights before and after."""
    torch.set_num_threads(2)
    job = _job(tiny_model_dir, tmp_path_factory.mktemp(request.param), request.param)
    trainer = build_trainer(job)
    layers = {type(m).__name__ for name, m in trainer.model.named_modules() if name.endswith("base_layer")}
    q_proj = _q_proj(trainer.model)
    before = {
        "base": q_proj.base_layer.weight.detach().clone(),
        "lora_B": q_proj.lora_B["default"].weight.detach().clone(),
    }
    result = finish_training(trainer, job, trainer.train())
    return {"job": job, "trainer": trainer, "result": result, "layers": layers, "before": before}


def test_lora_trains_on_the_quantized_base_and_leaves_it_unchanged(trained):
    job, q_proj = trained["job"], _q_proj(trained["trainer"].model)
    assert job.quantization in ("4bit", "8bit")
    assert trained["layers"] == {LAYER_TYPES[job.quantization]}
    assert math.isfinite(trained["result"].final_metrics["loss"])
    assert not torch.equal(q_proj.lora_B["default"].weight.detach(), trained["before"]["lora_B"])  # it learned
    assert torch.equal(q_proj.base_layer.weight.detach(), trained["before"]["base"])  # quantized weights did not move


def test_the_saved_adapter_reloads_onto_a_quantized_base_with_the_same_logits(trained, tiny_model_dir):
    from peft import PeftModel

    job, model_dir = trained["job"], trained["result"].model_dir
    assert is_adapter_folder(model_dir)  # the adapter alone, though lora.merge_on_save is on
    base, _ = load_model_and_tokenizer(str(tiny_model_dir), **load_options(job.quantization, job.config, "cpu"))
    reloaded = PeftModel.from_pretrained(base, str(model_dir))
    assert torch.equal(_logits(reloaded), _logits(trained["trainer"].model))


def test_the_evaluation_loads_the_adapter_merged_into_the_full_precision_base(trained):
    evaluated, _ = load_model_and_tokenizer(str(trained["result"].model_dir))  # as evaluate-holdout does
    q_proj = evaluated.model.layers[0].self_attn.q_proj
    assert type(q_proj).__name__ == "Linear" and q_proj.weight.dtype == torch.float32
    # The same adapter on the unquantized weights: close to the quantized model's answers, not equal.
    merged, quantized = _logits(evaluated), _logits(trained["trainer"].model)
    assert not torch.equal(merged, quantized)
    assert torch.allclose(torch.softmax(merged, -1), torch.softmax(quantized, -1), atol=0.05)
