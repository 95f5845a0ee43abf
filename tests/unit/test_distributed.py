"""The pure parts of multi-process training: how a step's pairs are split and padded, the
torchrun command line, the rendezvous, and how a failed process's error comes back."""

import json

import pytest

from simpo_core.errors import ConfigError, DataError
from simpo_core.train.distributed import shard, torchrun_command
from simpo_core.train.launch import failure, record_failure, rendezvous
from simpo_core.train.parallel import plan_micro_batches


def test_shard_is_contiguous_and_covers_everything():
    items = list(range(7))
    parts = [shard(items, i, 3) for i in range(3)]
    assert parts == [[0, 1], [2, 3], [4, 5, 6]]
    assert shard([1], 1, 2) == [1] and shard([1], 0, 2) == []


def test_every_process_runs_as_many_micro_batches_and_only_real_pairs_count():
    pairs = list("abcde")  # 5 pairs, 2 processes, micro-batches of 2: shares of 2 and 3
    plans = [plan_micro_batches(pairs, 2, rank, 2) for rank in (0, 1)]
    assert plans[0] == [(["a", "b"], True), (["a"], False)]  # padded to rank 1's two micro-batches
    assert plans[1] == [(["c", "d"], True), (["e"], True)]
    counted = [p for plan in plans for batch, counts in plan if counts for p in batch]
    assert counted == pairs
    assert plan_micro_batches(pairs, 2, 0, 1) == [(["a", "b"], True), (["c", "d"], True), (["e"], True)]
    assert plan_micro_batches(["a"], 4, 1, 2) == [(["a"], True)] and plan_micro_batches(["a"], 4, 0, 2) == [
        (["a"], False)
    ]


def test_torchrun_command_for_one_and_several_machines():
    one = torchrun_command(["-m", "simpo_core.train.worker", "--config", "job.yaml"], 2)
    assert one[1:4] == ["-m", "torch.distributed.run", "--standalone"]
    assert one[-5:] == ["--nproc_per_node=2", "--module", "simpo_core.train.worker", "--config", "job.yaml"]
    several = torchrun_command(["-m", "x"], 1, nnodes=2, rdzv_endpoint="10.0.0.1:29500", rdzv_id="a")
    assert "--nnodes=2" in several and "--rdzv_backend=c10d" in several and "--rdzv_endpoint=10.0.0.1:29500" in several
    assert "--standalone" not in several


def test_rendezvous_comes_from_the_environment(monkeypatch, tmp_path):
    for name in ("PET_RDZV_ENDPOINT", "PET_RDZV_ID", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    assert rendezvous(1, tmp_path) == {}
    with pytest.raises(ConfigError, match="PET_RDZV_ENDPOINT"):
        rendezvous(2, tmp_path)
    monkeypatch.setenv("MASTER_ADDR", "node0")
    monkeypatch.setenv("MASTER_PORT", "29400")
    first = rendezvous(2, tmp_path)
    assert first["rdzv_endpoint"] == "node0:29400" and first == rendezvous(2, tmp_path)  # same id on every machine
    monkeypatch.setenv("PET_RDZV_ENDPOINT", "10.0.0.1:29500")
    assert rendezvous(2, tmp_path)["rdzv_endpoint"] == "10.0.0.1:29500"


def test_a_failed_process_comes_back_as_its_own_error(tmp_path):
    assert isinstance(failure(tmp_path, -9), RuntimeError) and "no process recorded" in str(failure(tmp_path, -9))
    record_failure(tmp_path, 1, KeyError("boom"))
    record_failure(tmp_path, 0, DataError("row 3: 'chosen' is empty after truncation"))
    error = failure(tmp_path, 1)
    assert type(error) is DataError and str(error).startswith("rank 0 of the training failed: row 3")

    (tmp_path / "errors" / "rank-0.json").unlink()
    error = failure(tmp_path, 1)
    assert type(error) is RuntimeError and "KeyError" in str(error) and "traceback" in str(error)
    assert json.loads((tmp_path / "errors" / "rank-1.json").read_text())["user_error"] is False


def test_modules_built_for_a_sharded_start_hold_meta_parameters_and_real_buffers():
    import torch

    from simpo_core.train.sharded_start import parameters_on_meta

    class Rotary(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(4, 3)
            self.register_buffer("inv_freq", 1.0 / 10000 ** (torch.arange(0, 4, 2) / 4), persistent=False)

    with parameters_on_meta():
        empty = Rotary()
    assert all(p.is_meta for p in empty.parameters()) and empty.linear.weight.shape == (3, 4)
    torch.testing.assert_close(empty.inv_freq, torch.tensor([1.0, 0.01]))
    assert not Rotary().linear.weight.is_meta  # only inside the block


def test_checkpoint_names_and_owned_rows():
    import torch

    from simpo_core.train.sharded_start import checkpoint_key, owned_rows

    lora_base = "base_model.model.model.layers.0.self_attn.q_proj.base_layer.weight"
    assert checkpoint_key(lora_base) == "model.layers.0.self_attn.q_proj.weight"
    assert checkpoint_key("lm_head.weight") == "lm_head.weight"
    assert owned_rows(torch.zeros(5, 2)) == (0, 5)  # a tensor that is not sharded: all of it
