"""The CPU thread rule: the cores this process may use, shared by torchrun's processes, and no
more threads than the model's size profits from (affinity mocked)."""

import pytest
import torch

from simpo_core import threads
from simpo_core.threads import PARAMETERS_PER_THREAD, resolve_num_threads
from simpo_core.train.config import LAYOUT_FIELDS, SimPOConfig


@pytest.fixture
def cores(monkeypatch):
    """Pretend this process may run on `n` CPUs, outside torchrun and without OMP_NUM_THREADS."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)

    def set_cores(n: int) -> None:
        monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: set(range(n)), raising=False)

    return set_cores


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_an_explicit_count_is_used_as_it_is(cores):
    cores(2)
    assert resolve_num_threads(8, model_parameters=10) == 8


def test_unknown_size_takes_every_available_core(cores):
    cores(16)
    assert resolve_num_threads(None) == 16


def test_the_affinity_mask_not_the_machine_decides(cores, monkeypatch):
    cores(3)
    monkeypatch.setattr(threads.os, "cpu_count", lambda: 64)
    assert resolve_num_threads(None) == 3


@pytest.mark.parametrize(
    ("parameters", "expected"),
    [
        (500_000, 1),  # the embedded tiny model: one thread
        (PARAMETERS_PER_THREAD, 1),
        (PARAMETERS_PER_THREAD + 1, 2),
        (20_000_000, 5),
        (7_000_000_000, 16),  # a large model takes every core, never more
    ],
)
def test_small_models_run_fewer_threads(cores, parameters, expected):
    cores(16)
    assert resolve_num_threads(None, model_parameters=parameters) == expected


def test_torchrun_processes_share_the_cores(cores, monkeypatch):
    cores(16)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert resolve_num_threads(None) == 4
    assert resolve_num_threads(None, processes=3) == 5  # an explicit count of processes wins
    cores(2)
    assert resolve_num_threads(None) == 1  # more processes than cores: still one thread each


def test_omp_num_threads_caps_the_cores(cores, monkeypatch):
    cores(16)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert resolve_num_threads(None) == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "64")
    assert resolve_num_threads(None) == 16  # never more than the cores
    monkeypatch.setenv("OMP_NUM_THREADS", "not-a-number")
    assert resolve_num_threads(None) == 16


def test_torchrun_children_get_their_share_instead_of_one(cores):
    cores(8)
    assert threads.torchrun_environment(None, processes=2) == {"OMP_NUM_THREADS": "4"}
    assert threads.torchrun_environment(3, processes=2) == {"OMP_NUM_THREADS": "3"}


def test_apply_sets_torch_threads_for_the_model(cores, restore_threads):
    cores(4)
    small = torch.nn.Linear(10, 10)
    assert threads.apply_num_threads(None, small) == 1
    assert torch.get_num_threads() == 1
    assert threads.apply_num_threads(2, small) == 2
    assert torch.get_num_threads() == 2


def test_num_threads_is_a_layout_setting():
    assert SimPOConfig().num_threads is None
    assert SimPOConfig(num_threads=4).num_threads == 4
    assert "num_threads" in LAYOUT_FIELDS
    with pytest.raises(ValueError):
        SimPOConfig(num_threads=0)


def test_num_threads_is_not_part_of_the_training_identity():
    from simpo_core.gate.identity import training_identity

    def identity(config: SimPOConfig) -> str:
        return training_identity("data", {}, config.model_dump(mode="json"), "model", code_version="v")

    assert identity(SimPOConfig(num_threads=1)) == identity(SimPOConfig())
