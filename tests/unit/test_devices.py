"""Which GPUs sweep trials get (fake device lists, no GPU needed) and per-training random numbers."""

import threading

import pytest
import torch

from simpo_core.errors import ConfigError
from simpo_core.rng import TrainingRng, draws_randomness, seeded
from simpo_core.sweep.placement import DevicePool, gpu_groups, gpu_worker_class, trial_placement, visible_devices
from simpo_core.sweep.settings import SweepSettings

FOUR_GPUS = ["cuda:0", "cuda:1", "cuda:2", "cuda:3"]


def test_concurrent_trials_get_distinct_gpus_and_release_returns_them():
    pool = DevicePool(FOUR_GPUS)
    first, pair, third = pool.acquire(1), pool.acquire(2), pool.acquire(1)  # three trials, one needs two GPUs
    assert (first, pair, third) == (["cuda:0"], ["cuda:1", "cuda:2"], ["cuda:3"])
    assert pool.in_use() == dict.fromkeys(FOUR_GPUS, 1)  # every GPU taken once: none shared
    pool.release(pair)
    assert pool.in_use() == {"cuda:0": 1, "cuda:1": 0, "cuda:2": 0, "cuda:3": 1}
    assert pool.acquire(2) == ["cuda:1", "cuda:2"]  # the freed GPUs, not one that is busy
    for held in (first, ["cuda:1", "cuda:2"], third):
        pool.release(held)
    assert pool.in_use() == dict.fromkeys(FOUR_GPUS, 0)


def test_free_gpus_are_handed_out_in_turn_and_shared_only_when_none_is_free():
    pool = DevicePool(FOUR_GPUS)
    pool.release(pool.acquire())  # cuda:0, back at once
    assert pool.acquire() == ["cuda:1"]  # the next in turn, not always the first GPU
    taken = [pool.acquire()[0] for _ in range(3)]
    assert taken == ["cuda:2", "cuda:3", "cuda:0"]
    assert pool.acquire() == ["cuda:1"]  # none free: the least busy, in turn
    assert pool.in_use() == {"cuda:0": 1, "cuda:1": 2, "cuda:2": 1, "cuda:3": 1}


def test_pool_refuses_what_it_cannot_give_or_take_back():
    pool = DevicePool(["cuda:0", "cuda:1"])
    with pytest.raises(ValueError, match="cannot take 3 device"):
        pool.acquire(3)
    with pytest.raises(ValueError, match="was not handed out"):
        pool.release(["cuda:1"])
    with pytest.raises(ValueError, match="at least one device"):
        DevicePool([])


def test_gpu_groups_and_the_visible_devices_a_child_process_gets(monkeypatch):
    assert gpu_groups(8, 1) == [[index] for index in range(8)]
    assert gpu_groups(5, 2) == [[0, 1], [2, 3]]  # the fifth GPU stays idle
    assert gpu_groups(1, 2) == [] and gpu_groups(0, 1) == []
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert visible_devices([2, 3]) == "2,3"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5,6,7")  # this process sees GPUs 4-7 as 0-3
    assert visible_devices([1, 3]) == "5,7"


def test_thread_runner_hands_each_concurrent_trial_its_own_gpu():
    placement = trial_placement(SweepSettings(), "auto", per_trial=1, gpus=4)
    assert placement.concurrency == 4  # unset max_concurrency: one trial per GPU
    devices = [placement.acquire(name) for name in ("a", "b", "c")]
    assert devices == ["cuda:0", "cuda:1", "cuda:2"] and placement.device_of("b") == "cuda:1"
    placement.release("b")
    placement.release("never-started")  # a trial that held nothing: nothing to give back
    assert placement.acquire("d") == "cuda:3" and placement.acquire("e") == "cuda:1"
    assert placement.pool.in_use() == dict.fromkeys(FOUR_GPUS, 1)


def test_without_gpus_or_with_an_explicit_device_trials_keep_model_device():
    cpu = trial_placement(SweepSettings(), "auto", per_trial=1, gpus=0)
    assert cpu.concurrency == 1 and cpu.pool is None and cpu.acquire("a") == "auto"  # today's CPU default
    assert trial_placement(SweepSettings(max_concurrency=3), "auto", 1, gpus=0).concurrency == 3
    pinned = trial_placement(SweepSettings(max_concurrency=2), "cuda:1", per_trial=1, gpus=4)
    assert pinned.pool is None and pinned.acquire("a") == "cuda:1"  # the user chose the GPU
    assert pinned.cluster_options() == {}


def test_local_dask_cluster_starts_one_worker_per_gpu_group_each_seeing_its_own():
    dask = SweepSettings(runner="dask")
    placement = trial_placement(dask, "auto", per_trial=2, gpus=4)
    assert placement.concurrency == 2 and placement.worker_gpus == ["0,1", "2,3"]
    options = placement.cluster_options()
    assert options["gpu_groups"] == ["0,1", "2,3"] and options["worker_class"] is gpu_worker_class()
    assert placement.acquire("a") == "auto"  # the worker's own GPUs are what `auto` sees
    remote = trial_placement(SweepSettings(runner="dask", dask_address="tcp://10.0.0.5:8786"), "auto", 1, gpus=4)
    assert remote.concurrency == 1 and remote.cluster_options() == {}  # that scheduler's workers are not counted


def test_gpu_worker_sets_its_groups_cuda_visible_devices():
    from distributed import Nanny

    worker_class = gpu_worker_class()
    assert issubclass(worker_class, Nanny)
    nanny = worker_class("tcp://127.0.0.1:1", gpu_groups=["0", "1,2"], name=1, env={"A": "1"}, nthreads=1)
    assert nanny.env["CUDA_VISIBLE_DEVICES"] == "1,2" and nanny.env["A"] == "1"
    assert worker_class("tcp://127.0.0.1:1", gpu_groups=["0", "1,2"], name=2).env["CUDA_VISIBLE_DEVICES"] == "0"


def test_several_torchrun_trials_at_once_on_the_thread_runner_are_refused_on_gpus():
    assert trial_placement(SweepSettings(), "auto", per_trial=2, gpus=4).concurrency == 1
    with pytest.raises(ConfigError, match="sweep.runner=dask"):
        trial_placement(SweepSettings(max_concurrency=2), "auto", per_trial=2, gpus=4)
    assert trial_placement(SweepSettings(max_concurrency=2), "auto", per_trial=2, gpus=0).concurrency == 2  # CPU


def _draws(rng: TrainingRng, count: int) -> list[float]:
    with rng.drawing("cpu"):
        return torch.rand(count).tolist()


def test_a_trainings_draws_do_not_depend_on_what_draws_beside_it():
    torch.manual_seed(7)
    expected = torch.rand(6).tolist()  # what torch.manual_seed(7) gives
    rng, other = TrainingRng(7), TrainingRng(8)
    first = _draws(rng, 3)
    _draws(other, 5)
    torch.manual_seed(123)  # anyone may reseed the process's generator between sections
    torch.rand(4)
    assert first + _draws(rng, 3) == expected
    rng.reset()
    assert _draws(rng, 6) == expected


def test_sections_in_threads_draw_as_they_would_alone():
    streams = {seed: TrainingRng(seed) for seed in (1, 2)}
    seen: dict[int, list[float]] = {1: [], 2: []}
    start = threading.Barrier(2)

    def draw(seed: int) -> None:
        start.wait()
        for _ in range(200):
            seen[seed] += _draws(streams[seed], 1)

    threads = [threading.Thread(target=draw, args=(seed,)) for seed in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for seed in (1, 2):
        assert seen[seed] == _draws(TrainingRng(seed), 200)  # one section at a time, each from its own state


def test_seeded_section_leaves_the_callers_stream_alone():
    rng = TrainingRng(3)
    before = _draws(rng, 2)
    with seeded(11, "cpu"):
        torch.rand(10)
    assert before + _draws(rng, 2) == _draws(TrainingRng(3), 4)


def test_dropout_anywhere_means_training_draws_random_numbers(tiny_model_dir):
    from simpo_core.models import load_model_and_tokenizer

    model, _ = load_model_and_tokenizer(str(tiny_model_dir))
    assert not draws_randomness(model)  # the tiny model has no dropout
    model.config.attention_dropout = 0.1
    assert draws_randomness(model)
    model.config.attention_dropout = 0.0
    assert draws_randomness(torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout(0.05)))
    assert not draws_randomness(torch.nn.Sequential(torch.nn.Dropout(0.0)))
