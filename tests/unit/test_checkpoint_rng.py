"""A checkpoint records the generator of the GPU the training ran on, and a resume puts it on
the GPU it runs on then: a retried sweep trial may get another GPU index."""

import torch

from simpo_core.train import checkpoint


class FakeCuda:
    """torch.cuda's generator calls on a machine with four GPUs, each state a tensor."""

    def __init__(self) -> None:
        self.states = {index: torch.tensor([index], dtype=torch.uint8) for index in range(4)}

    def get_rng_state(self, device):
        return self.states[torch.device(device).index].clone()

    def set_rng_state(self, state, device):
        self.states[torch.device(device).index] = state.clone()

    def current_device(self):
        return 0


def test_the_training_gpus_state_moves_with_the_training(monkeypatch):
    fake = FakeCuda()
    for name in ("get_rng_state", "set_rng_state", "current_device"):
        monkeypatch.setattr(torch.cuda, name, getattr(fake, name))

    saved = checkpoint.capture_rng_state(torch.device("cuda", 2))
    assert torch.equal(saved["cuda"], torch.tensor([2], dtype=torch.uint8))  # cuda:2's alone, not all four

    checkpoint.restore_rng_state(saved, torch.device("cuda", 1))  # resumed on another GPU
    assert [int(fake.states[index]) for index in range(4)] == [0, 2, 2, 3]


def test_an_older_checkpoint_with_every_gpus_state_restores_by_index(monkeypatch):
    fake = FakeCuda()
    for name in ("get_rng_state", "set_rng_state", "current_device"):
        monkeypatch.setattr(torch.cuda, name, getattr(fake, name))
    older = {**checkpoint.capture_rng_state(), "cuda": [torch.tensor([9 + i], dtype=torch.uint8) for i in range(2)]}

    checkpoint.restore_rng_state(older, torch.device("cuda", 1))
    checkpoint.restore_rng_state(older, torch.device("cuda", 3))  # not in the older list: left alone
    assert [int(fake.states[index]) for index in range(4)] == [0, 10, 2, 3]


def test_a_cpu_training_records_no_gpu_state():
    state = checkpoint.capture_rng_state(torch.device("cpu"))
    assert "cuda" not in state
    before = torch.get_rng_state()
    torch.rand(3)
    checkpoint.restore_rng_state({**state, "torch": before}, torch.device("cpu"))
    assert torch.equal(torch.get_rng_state(), before)
