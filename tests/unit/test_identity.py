"""A training's identity: what decides the weights changes it, where and how it runs does not."""

import os
import shutil

import pytest

from simpo_core.errors import ConfigError
from simpo_core.gate import identity as identity_module
from simpo_core.gate.identity import (
    folder_digest,
    model_identity,
    resolved_training,
    training_code_version,
    training_identity,
)
from simpo_core.train.config import SimPOConfig


def _identity(code="code-1", **fields) -> str:
    training = SimPOConfig(**fields).model_dump(mode="json")
    return training_identity("data-sha", {"split": {"seed": 0}}, training, "m", code)


def test_process_layout_keeps_the_identity_and_the_math_or_the_strategy_changes_it():
    one = _identity()
    assert _identity(num_processes=8, nnodes=2, save_steps=7, output_dir="elsewhere") == one
    assert _identity(strategy="fsdp") != one  # its checkpoints are sharded: not interchangeable
    assert _identity(lr=2e-6) != one and _identity(seed=1) != one


def test_the_training_code_is_part_of_the_identity():
    assert _identity(code="code-2") != _identity(code="code-1")
    version = training_code_version()
    package, digest = version.split("+")
    assert package and len(digest) == 12
    training = SimPOConfig().model_dump(mode="json")
    assert training_identity("d", {}, training, "m") == training_identity("d", {}, training, "m", version)


def test_precision_auto_is_resolved_before_it_is_hashed():
    resolved = resolved_training(SimPOConfig(precision="auto"), device="cpu")
    assert resolved["precision"] == "fp32"  # the policy `auto` picks on a CPU
    assert resolved == resolved_training(SimPOConfig(precision="fp32"), device="cpu")


def test_the_embedded_models_are_identified_by_their_recipe_not_their_build(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing is built: `.simpo/models` stays absent
    tiny, scratch = model_identity("tiny"), model_identity("tiny-scratch")
    assert tiny.startswith("embedded:tiny:") and scratch.startswith("embedded:tiny-scratch:") and tiny != scratch
    assert not (tmp_path / ".simpo").exists()
    monkeypatch.setattr("simpo_core.train.tiny_sft.TINY_SFT_ROWS", 1)
    assert model_identity("tiny") != tiny  # another SFT recipe is another starting model


def _big_file(path, size=65 * 2**20):  # above the 64 MiB that used to be hashed by its edges only
    with path.open("wb") as handle:
        handle.truncate(size)
    return path


def test_large_weight_files_are_identified_by_content_not_by_time_or_edges(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    weights = _big_file(model / "model.safetensors")
    (model / "config.json").write_text("{}")
    before = folder_digest(model)

    copy = tmp_path / "copy"
    shutil.copytree(model, copy)  # new modification times and inodes, same bytes
    assert folder_digest(copy) == before

    stat = weights.stat()
    middle = weights.stat().st_size // 2
    with weights.open("r+b") as handle:  # a change in the middle, same size, time restored (rsync -a)
        handle.seek(middle)
        handle.write(b"\x01")
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert folder_digest(model) != before


def test_file_digests_are_cached_per_size_times_and_inode(tmp_path, monkeypatch):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "model.safetensors").write_bytes(b"weights")
    first = folder_digest(tmp_path)
    hashed = []
    monkeypatch.setattr(identity_module, "file_sha256", lambda path: hashed.append(path) or "x")
    assert folder_digest(tmp_path) == first and hashed == []  # both files came from the cache
    (tmp_path / "model.safetensors").write_bytes(b"other!!")
    folder_digest(tmp_path)
    assert [path.name for path in hashed] == ["model.safetensors"]


def test_an_uncached_hub_model_offline_is_refused_not_given_a_changing_identity(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ConfigError, match="its commit is unknown"):
        model_identity("some-org/not-cached-model")
