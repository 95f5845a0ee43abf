"""`train.packed_attention`: the path packed attention took is in the training result, and
`flex` turns a FlexAttention failure into an error instead of a fallback."""

import pandas as pd
import pytest

from simpo_core.data.synthetic import generate_pairs
from simpo_core.train import packing
from simpo_core.train.config import SimPOConfig
from simpo_core.train.training_folder import finished_training
from simpo_core.train.worker import TrainJob, run_training


@pytest.fixture
def job(tiny_model_dir, tmp_path):
    pairs = tmp_path / "pairs.jsonl"
    pd.DataFrame(generate_pairs(16, seed=2)).to_json(pairs, orient="records", lines=True)

    def make(backend: str) -> TrainJob:
        config = SimPOConfig.preset("tiny-scratch").model_copy(
            update={"max_steps": 2, "batch_size": 4, "output_dir": str(tmp_path / backend), "packed_attention": backend}
        )
        return TrainJob(str(tiny_model_dir), pairs, None, config, device="cpu")

    yield make
    packing.set_packed_attention_backend("auto")


def test_the_training_result_records_the_packed_attention_path(job):
    result = run_training(job("auto"))
    assert result.packed_attention_path == "loop"  # the CPU default: the exact per-sequence loop
    assert result.packed_attention_fallbacks == 0
    again = finished_training(job("auto").config.output_dir)  # what a rerun reads back
    assert again.packed_attention_path == "loop"


def test_flex_makes_a_failure_an_error_not_a_fallback(job):
    # FlexAttention has no CPU backward: under "flex" the training step fails, loudly.
    with pytest.raises(Exception, match="(?i)flex|backward|not implemented|not supported"):
        run_training(job("flex"))


def test_fallbacks_are_counted_per_training_not_per_process(job, monkeypatch):
    monkeypatch.setattr(packing, "_fallbacks", packing.packed_attention_fallbacks() + 5)  # earlier trainings
    assert run_training(job("auto")).packed_attention_fallbacks == 0
