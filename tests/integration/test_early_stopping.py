"""Early stopping ends a real run at the configured plateau, and a resumed run stops at the same step."""

import pytest
import torch

from simpo_core.data.synthetic import generate_pairs
from simpo_core.models import load_model_and_tokenizer
from simpo_core.train.config import SimPOConfig
from simpo_core.train.events import TrainerEvents
from simpo_core.train.trainer import SimPOTrainer


class Events(TrainerEvents):
    """Records `(event, step, details)` for the events early stopping concerns."""

    def __init__(self):
        self.seen = []

    def on_eval(self, step, metrics):
        self.seen.append(("eval", step, metrics))

    def on_early_stop(self, step, message):
        self.seen.append(("early_stop", step, message))

    def on_end(self, step, metrics):
        self.seen.append(("end", step, metrics))


@pytest.fixture(autouse=True)
def two_threads():
    torch.set_num_threads(2)


def _trainer(tiny_model_dir, tmp_path, events, **overrides):
    model, tokenizer = load_model_and_tokenizer(str(tiny_model_dir))
    # min_delta 1.0: an accuracy can never improve by more than 1, so every evaluation after the
    # first counts against the patience and the run must stop at the 3rd evaluation (step 6).
    settings = {"max_steps": 30, "logging_steps": 5, "eval_steps": 2, "save_steps": 0, **overrides}
    early_stopping = {"patience": 2, "min_delta": 1.0}
    config = SimPOConfig.for_tiny(output_dir=tmp_path / "out", early_stopping=early_stopping, **settings)
    return SimPOTrainer(
        model,
        config,
        tokenizer=tokenizer,
        train_dataset=generate_pairs(64, seed=1),
        eval_dataset=generate_pairs(8, seed=99),
        callbacks=[events],
    )


def test_early_stopping_ends_the_run_at_the_plateau_and_the_history_says_so(tiny_model_dir, tmp_path):
    events = Events()
    trainer = _trainer(tiny_model_dir, tmp_path, events)
    history = trainer.train()

    assert trainer.global_step == 6 and trainer.stopped_early_at_step == 6
    assert [e["step"] for e in history if "eval_loss" in e] == [2, 4, 6]  # no extra evaluation at the end
    assert next(e for e in reversed(history) if "eval_loss" in e)["stopped_early_at_step"] == 6
    assert [e["step"] for e in history if "loss" in e] == [5, 6]  # step 6 logged although logging_steps is 5
    assert trainer.last_metrics["stopped_early_at_step"] == 6
    stops = [(step, message) for event, step, message in events.seen if event == "early_stop"]
    assert len(stops) == 1 and stops[0][0] == 6 and "eval_rewards/accuracies" in stops[0][1]
    assert events.seen[-1][0] == "end" and events.seen[-1][2]["stopped_early_at_step"] == 6


def test_a_resumed_run_keeps_its_patience_counter_and_stops_at_the_same_step(tiny_model_dir, tmp_path):
    first = _trainer(tiny_model_dir, tmp_path, Events(), save_steps=4)
    first.train()
    assert first.stopped_early_at_step == 6  # checkpoint at step 4 only: best set at 2, one miss at 4

    events = Events()
    resumed = _trainer(tiny_model_dir, tmp_path, events, save_steps=4)
    resumed.train(resume=True)
    assert resumed.resumed_from_step == 4
    # a counter restarted at step 4 would need evaluations 6, 8 and 10; the restored one stops at 6
    assert resumed.global_step == 6 and resumed.stopped_early_at_step == 6
    assert [step for event, step, _ in events.seen if event == "eval"] == [6]
