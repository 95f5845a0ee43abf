"""Held-out split by prompt hash: stable under reruns, shuffling and appended data."""

import pandas as pd
import pytest

from simpo_core.data.split import split_holdout
from simpo_core.errors import ConfigError, DataError


def pairs(start, stop, repeats=1):
    rows = [
        {"prompt": [{"role": "user", "content": f"prompt {i}"}], "chosen": f"c{i}-{r}", "rejected": f"r{i}-{r}"}
        for i in range(start, stop)
        for r in range(repeats)
    ]
    return pd.DataFrame(rows)


def heldout_prompts(frame, **kwargs):
    return {p if isinstance(p, str) else p[0]["content"] for p in split_holdout(frame, **kwargs)[1]["prompt"]}


def test_fraction_is_roughly_respected_and_prompts_never_straddle():
    frame = pairs(0, 2000, repeats=2)
    train, heldout = split_holdout(frame, 0.2)
    assert len(train) + len(heldout) == 4000
    assert 0.17 < len(heldout) / 4000 < 0.23
    train_prompts = {p[0]["content"] for p in train["prompt"]}
    assert not train_prompts & {p[0]["content"] for p in heldout["prompt"]}


def test_stable_under_shuffling_and_appending():
    frame = pairs(0, 500)
    first = heldout_prompts(frame)
    assert heldout_prompts(frame.sample(frac=1.0, random_state=3)) == first
    grown = heldout_prompts(pd.concat([frame, pairs(500, 1000)], ignore_index=True))
    assert {p for p in grown if int(p.split()[1]) < 500} == first


def test_string_and_message_prompts_hash_alike():
    frame = pairs(0, 300)
    as_strings = frame.assign(prompt=[p[0]["content"] for p in frame["prompt"]])
    assert heldout_prompts(as_strings) == heldout_prompts(frame)


def test_salt_changes_the_split():
    frame = pairs(0, 300)
    assert heldout_prompts(frame, salt="a") != heldout_prompts(frame, salt="b")


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1])
def test_fraction_out_of_range(fraction):
    with pytest.raises(ConfigError, match=r"in \(0, 1\)"):
        split_holdout(pairs(0, 10), fraction)


def test_empty_side_is_a_clear_error():
    with pytest.raises(DataError, match="split is empty: 5 rows with 1 distinct prompts"):
        split_holdout(pairs(0, 1, repeats=5), 0.5)


def test_the_streamed_split_step_writes_the_in_memory_split(tmp_path, monkeypatch):
    import simpo_core.data.split as split_module
    from simpo_core.data.settings import SplitSettings

    monkeypatch.setattr(split_module, "CHUNK_ROWS", 7)  # several chunks
    frame = pairs(0, 60, repeats=2)
    frame.to_parquet(tmp_path / "valid.parquet", index=False)
    result = split_module.write_split(tmp_path / "valid.parquet", tmp_path / "out", SplitSettings(heldout_fraction=0.2))
    train, heldout = split_holdout(frame, 0.2, "simpo")
    pd.testing.assert_frame_equal(pd.read_parquet(result.train_path), train)
    pd.testing.assert_frame_equal(pd.read_parquet(result.heldout_path), heldout)
    assert (result.train_pairs, result.heldout_pairs) == (len(train), len(heldout))
