"""Models built in threads of one process (concurrent sweep trials, a thread task runner):
transformers swaps process-wide functions for no-ops while it builds a model, so builds that
overlap must not leave a loaded model untied or the process's later models uninitialised."""

import threading

import pytest
import torch

from simpo_core.models import load_model_and_tokenizer
from simpo_core.tiny_model import build_tiny_model

pytestmark = pytest.mark.integration


def test_models_loaded_in_threads_at_once_stay_tied_and_later_builds_are_initialised(tied_model):
    from transformers import PreTrainedModel

    tie_weights, init_normal = PreTrainedModel.tie_weights, torch.nn.init.normal_
    reference = build_tiny_model(vocab_size=64, seed=1)
    threads, start = 8, threading.Barrier(8)
    loaded, failures = [], []

    def load() -> None:
        try:
            start.wait()
            for _ in range(3):
                loaded.append(load_model_and_tokenizer(str(tied_model))[0])
        except Exception as error:  # reported below: a thread's exception would vanish
            failures.append(error)

    workers = [threading.Thread(target=load) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()

    assert not failures and len(loaded) == 3 * threads
    assert all(model.lm_head.weight is model.model.embed_tokens.weight for model in loaded)
    assert PreTrainedModel.tie_weights is tie_weights and torch.nn.init.normal_ is init_normal
    later = build_tiny_model(vocab_size=64, seed=1)  # initialised from its seed, as before the threads
    assert torch.equal(later.model.embed_tokens.weight, reference.model.embed_tokens.weight)
