"""The sweep's local Dask cluster starts one worker process per GPU group, and each process
sees only its own GPUs (CUDA_VISIBLE_DEVICES), whatever the machine (no GPU needed)."""

import os

from simpo_core.sweep.placement import trial_placement
from simpo_core.sweep.settings import SweepSettings


def _visible() -> str | None:
    return os.environ.get("CUDA_VISIBLE_DEVICES")


def test_each_local_worker_process_sees_only_its_gpu_group(tmp_path, monkeypatch):
    from distributed import Client, LocalCluster

    from flows.sweep import task_runner

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    sweep = SweepSettings(runner="dask")
    runner = task_runner(sweep, trial_placement(sweep, "auto", per_trial=2, gpus=4))  # as on a 4-GPU machine
    options = {**runner.cluster_kwargs, "local_directory": tmp_path / "dask"}
    with LocalCluster(**options) as cluster, Client(cluster) as client:
        seen = client.run(_visible)
        names = {info["name"]: address for address, info in client.scheduler_info()["workers"].items()}
    assert sorted(seen.values()) == ["0,1", "2,3"]
    assert seen[names[0]] == "0,1" and seen[names[1]] == "2,3"
    assert _visible() is None  # the flow's own process is left as it was
