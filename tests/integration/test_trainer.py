import math

import pytest
import torch
from torch.testing import assert_close

from simpo_core.data.synthetic import generate_pairs
from simpo_core.errors import ConfigError
from simpo_core.models import load_model_and_tokenizer
from simpo_core.train.config import LoraSettings, SimPOConfig
from simpo_core.train.events import TrainerEvents
from simpo_core.train.logps import compute_pair_logps, sequence_logps
from simpo_core.train.loss import batch_logps
from simpo_core.train.tokenization import collate_pairs, encode_pairs
from simpo_core.train.trainer import SimPOTrainer, TrainingDivergedError


class EventNames(TrainerEvents):
    """Records `(event, step)` for every event the trainer reports."""

    def __init__(self):
        self.seen = []

    def on_log(self, step, metrics):
        self.seen.append(("log", step))

    def on_eval(self, step, metrics):
        self.seen.append(("eval", step))

    def on_checkpoint(self, step, metrics):
        self.seen.append(("checkpoint", step))

    def on_end(self, step, metrics):
        self.seen.append(("end", step))


@pytest.fixture(autouse=True)
def two_threads():
    torch.set_num_threads(2)


@pytest.fixture
def tiny(tiny_model_dir):
    return load_model_and_tokenizer(str(tiny_model_dir))


def _config(tmp_path, **overrides):
    # `tiny` here is the from-scratch build: its preset (batch 8, SFT term) is `tiny-scratch`.
    values = {"output_dir": tmp_path / "out", "save_steps": 0, "eval_steps": 0, **overrides}
    return SimPOConfig.preset("tiny-scratch", **values)


def test_selected_positions_path_equals_full_logits(tiny):
    model, tokenizer = tiny
    batch = collate_pairs(encode_pairs(tokenizer, generate_pairs(3, seed=1), 256, 128), tokenizer.pad_token_id)
    fast, lengths = sequence_logps(model, batch)
    full = batch_logps(
        model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits,
        batch["labels"],
        average=False,
    )
    assert_close(fast, full, rtol=1e-5, atol=1e-4)
    assert lengths.tolist() == (batch["labels"][:, 1:] != -100).sum(-1).tolist()


def test_compute_pair_logps_is_ordered_batched_and_matches_evaluation(tiny, tmp_path):
    model, tokenizer = tiny
    rows = generate_pairs(5, seed=2)
    out = compute_pair_logps(model, tokenizer, rows, max_length=256, max_prompt_length=128, batch_size=2)
    one_by_one = [
        compute_pair_logps(model, tokenizer, [row], max_length=256, max_prompt_length=128, batch_size=1) for row in rows
    ]
    assert_close(out["chosen_logps"], torch.cat([o["chosen_logps"] for o in one_by_one]), rtol=1e-5, atol=1e-5)
    summed = compute_pair_logps(
        model, tokenizer, rows, max_length=256, max_prompt_length=128, batch_size=2, average=False
    )
    assert_close(summed["rejected_logps"] / summed["rejected_lengths"], out["rejected_logps"])
    assert out["chosen_lengths"][0] == len(rows[0]["chosen"]) + 1  # bytes + EOS
    metrics = SimPOTrainer(model, _config(tmp_path), tokenizer=tokenizer).evaluate(rows)
    assert metrics["eval_logps/chosen"] == pytest.approx(out["chosen_logps"].mean().item(), abs=1e-5)
    accuracy = (2.0 * (out["chosen_logps"] - out["rejected_logps"]) > 0).float().mean().item()
    assert metrics["eval_rewards/accuracies"] == pytest.approx(accuracy)


def test_gradient_accumulation_equals_one_big_batch(tiny_model_dir, tmp_path):
    """5 pairs as one micro-batch vs micro-batches of 2, 2, 1 (SFT term on, so the token
    weighting is checked too): the same step loss and the same accumulated gradients.
    (Weights after an Adam step are a poor check: Adam's first update is about lr·sign(g),
    which float noise flips where g is near zero.)"""
    rows = generate_pairs(5, seed=3)
    results = []
    for batch_size, accumulation in ((5, 1), (2, 3)):
        model, tokenizer = load_model_and_tokenizer(str(tiny_model_dir))
        config = _config(tmp_path, batch_size=batch_size, gradient_accumulation_steps=accumulation, sft_weight=0.5)
        trainer = SimPOTrainer(model, config, tokenizer=tokenizer)
        metrics = trainer._accumulate(trainer._encode(rows), backward=True)
        results.append((metrics, {n: p.grad.clone() for n, p in model.named_parameters()}))
    for key, value in results[0][0].items():
        assert value == pytest.approx(results[1][0][key], abs=1e-5), key
    for name, grad in results[0][1].items():
        assert_close(grad, results[1][1][name], rtol=1e-4, atol=1e-6, msg=name)
    assert SimPOTrainer(model, config, tokenizer=tokenizer).train_step(rows) == pytest.approx(
        results[0][0]["loss"], abs=1e-5
    )


def test_lora_freezes_the_base_moves_the_adapter_and_saves_a_merged_model(tiny, tmp_path):
    model, tokenizer = tiny
    config = _config(tmp_path, max_steps=3, lora=LoraSettings(r=4, alpha=8, dropout=0.0), lr=1e-2)
    trainer = SimPOTrainer(model, config, tokenizer=tokenizer, train_dataset=generate_pairs(24, seed=4))
    named = dict(trainer.model.named_parameters())
    before = {n: p.detach().clone() for n, p in named.items()}
    trainer.train()
    base = [n for n in named if "lora_" not in n]
    adapter = [n for n in named if "lora_B" in n]
    assert base and adapter
    assert all(torch.equal(before[n], named[n]) for n in base)
    assert all(not torch.equal(before[n], named[n]) for n in adapter)
    path = trainer.save_model(str(tmp_path / "final"))
    merged, _ = load_model_and_tokenizer(path)
    rows = generate_pairs(3, seed=5)
    limits = {"max_length": 512, "max_prompt_length": 256, "batch_size": 8}
    expected = compute_pair_logps(trainer.model, tokenizer, rows, **limits)["chosen_logps"]
    assert_close(compute_pair_logps(merged, tokenizer, rows, **limits)["chosen_logps"], expected, rtol=1e-4, atol=1e-4)
    assert (tmp_path / "final" / "adapter" / "adapter_config.json").exists()


def test_nan_loss_stops_with_the_step_and_last_metrics(tiny, tmp_path):
    model, tokenizer = tiny
    trainer = SimPOTrainer(
        model,
        _config(tmp_path, max_steps=4, logging_steps=1),
        tokenizer=tokenizer,
        train_dataset=generate_pairs(16, seed=6),
    )

    class Poison(TrainerEvents):
        def on_log(self, step, metrics):
            if step == 2:
                model.lm_head.weight.data.fill_(math.nan)

    trainer.callbacks.append(Poison())
    with pytest.raises(TrainingDivergedError, match=r"step 3: the loss is nan. Last logged metrics: \{'step': 2"):
        trainer.train()


def test_a_plain_function_as_callback_is_refused_before_any_work(tiny, tmp_path):
    model, tokenizer = tiny
    with pytest.raises(ConfigError, match="subclass simpo_core.train.events.TrainerEvents"):
        SimPOTrainer(model, _config(tmp_path), tokenizer=tokenizer, callbacks=[lambda event, step, metrics: None])


def test_history_has_step_epoch_lr_and_trl_metric_names(tiny, tmp_path):
    model, tokenizer = tiny
    events = EventNames()
    config = _config(tmp_path, max_steps=4, logging_steps=2, eval_steps=2)
    trainer = SimPOTrainer(
        model,
        config,
        tokenizer=tokenizer,
        train_dataset=generate_pairs(16, seed=7),
        eval_dataset=generate_pairs(4, seed=8),
        callbacks=[events],
    )
    history = trainer.train()
    train_entries = [e for e in history if "loss" in e]
    eval_entries = [e for e in history if "eval_loss" in e]
    assert [e["step"] for e in train_entries] == [2, 4] and [e["step"] for e in eval_entries] == [2, 4]
    for key in (
        "epoch",
        "lr",
        "rewards/chosen",
        "rewards/rejected",
        "rewards/margins",
        "rewards/accuracies",
        "logps/chosen",
        "logps/rejected",
    ):
        assert key in train_entries[0]
    assert train_entries[-1]["epoch"] == pytest.approx(4 * 8 / 16)
    assert events.seen == [("log", 2), ("eval", 2), ("log", 4), ("eval", 4), ("end", 4)]


def test_resume_after_an_interruption_equals_an_uninterrupted_run(tiny_model_dir, tmp_path):
    rows = generate_pairs(40, seed=9)

    def run(output, resume=False, stop_at=None):
        model, tokenizer = load_model_and_tokenizer(str(tiny_model_dir))
        config = SimPOConfig.for_tiny(
            output_dir=output,
            max_steps=6,
            save_steps=2,
            save_total_limit=2,
            lora=LoraSettings(r=4, dropout=0.1),
            eval_steps=0,
            logging_steps=1,
        )

        class Stop(TrainerEvents):
            def on_checkpoint(self, step, metrics):
                if step == stop_at:
                    raise KeyboardInterrupt

        trainer = SimPOTrainer(model, config, tokenizer=tokenizer, train_dataset=rows, callbacks=[Stop()])
        history = trainer.train(resume=resume)
        return trainer, history

    reference, reference_history = run(tmp_path / "a")
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "b", stop_at=4)
    checkpoints = sorted(p.name for p in (tmp_path / "b").iterdir())
    assert checkpoints == ["checkpoint-2", "checkpoint-4"]
    (tmp_path / "b" / ".tmp-checkpoint-6").mkdir()  # a save cut short by a crash
    (tmp_path / "b" / "checkpoint-8").mkdir()  # a hand-made folder missing its files
    resumed, resumed_history = run(tmp_path / "b", resume=True)
    assert resumed.global_step == 6
    assert [e["step"] for e in resumed_history] == [e["step"] for e in reference_history]
    assert resumed_history[-1]["loss"] == pytest.approx(reference_history[-1]["loss"], abs=1e-6)
    for (name, a), (_, b) in zip(reference.model.named_parameters(), resumed.model.named_parameters()):
        assert_close(a, b, rtol=0, atol=1e-6, msg=name)


def test_full_model_save_round_trips(tiny, tmp_path):
    model, tokenizer = tiny
    trainer = SimPOTrainer(
        model, _config(tmp_path, max_steps=1), tokenizer=tokenizer, train_dataset=generate_pairs(8, seed=10)
    )
    trainer.train()
    path = trainer.save_model()
    assert path.endswith("final") and (tmp_path / "out" / "final" / "model.safetensors").exists()
    loaded, loaded_tokenizer = load_model_and_tokenizer(path)
    assert_close(loaded.lm_head.weight, trainer.model.lm_head.weight)
    assert loaded_tokenizer.chat_template == tokenizer.chat_template
