"""Loading every source kind: files, folders, synthetic, hub ids; nothing dropped."""

import json

import pandas as pd
import pytest

from simpo_core.data.loading import load_preferences, parse_hub_id, parse_synthetic_spec
from simpo_core.errors import ConfigError, DataError
from tests.conftest import DPO_EN_DEMO_FACTS

GOOD = {"prompt": "p", "chosen": "yes", "rejected": "no"}


def write_lines(path, lines):
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    return path


def test_jsonl_bad_lines_are_rows_with_their_line_number(tmp_path):
    path = write_lines(
        tmp_path / "d.jsonl",
        [
            json.dumps(GOOD).encode(),
            b"",
            b'{"prompt": "p", "chosen": ',
            json.dumps(GOOD).encode(),
            b'{"prompt": "\xff"}',
        ],
    )
    loaded = load_preferences(str(path))
    rows = loaded.rows
    assert loaded.total == 4 and list(rows["source_row"]) == [1, 3, 4, 5]  # line 2 is blank
    assert list(rows["load_reasons"]) == [(), ("invalid_json",), (), ("invalid_unicode",)]
    assert "line 3" in rows["load_details"][1][0]
    assert rows["record"][1] == '{"prompt": "p", "chosen": '


def test_json_array_csv_and_parquet_give_the_same_rows(tmp_path):
    records = [GOOD, {"prompt": "q", "chosen": "[not json", "rejected": "b"}]
    (tmp_path / "a.json").write_text(json.dumps(records))
    pd.DataFrame(records).to_csv(tmp_path / "a.csv", index=False)
    pd.DataFrame(records).to_parquet(tmp_path / "a.parquet")
    frames = [load_preferences(str(tmp_path / name)).rows for name in ("a.json", "a.csv", "a.parquet")]
    for frame in frames:
        assert list(frame["chosen"]) == ["yes", "[not json"]
        assert frame["prompt"][1] == [{"role": "user", "content": "q"}]
        assert list(frame["source_row"]) == [1, 2]


def test_csv_cells_holding_messages_are_parsed(tmp_path):
    prompt = [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]
    pd.DataFrame([{"prompt": json.dumps(prompt), "chosen": "a", "rejected": "b"}]).to_csv(
        tmp_path / "m.csv", index=False
    )
    assert load_preferences(str(tmp_path / "m.csv")).rows["prompt"][0] == prompt


def test_folder_reads_every_file_and_names_it(tmp_path):
    write_lines(tmp_path / "one.jsonl", [json.dumps(GOOD).encode()])
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "two.json").write_text(json.dumps([GOOD, GOOD]))
    (tmp_path / "notes.txt").write_text("ignored")
    loaded = load_preferences(str(tmp_path))
    assert loaded.total == 3
    assert sorted(set(loaded.rows["source_file"])) == ["one.jsonl", "sub/two.json"]


def test_fingerprint_follows_the_bytes(tmp_path):
    path = write_lines(tmp_path / "d.jsonl", [json.dumps(GOOD).encode()])
    first = load_preferences(str(path)).fingerprint
    assert load_preferences(str(path)).fingerprint == first
    write_lines(path, [json.dumps({**GOOD, "chosen": "other"}).encode()])
    assert load_preferences(str(path)).fingerprint != first


def test_synthetic_default_and_spec():
    assert parse_synthetic_spec("synthetic") == {"n": 2000, "bias": 0.0, "seed": 0}
    loaded = load_preferences("synthetic:n=50,bias=1,seed=3")
    assert loaded.total == 50 and loaded.format == "flat"
    assert (loaded.rows["chosen"].str.len() > loaded.rows["rejected"].str.len()).all()
    assert loaded.fingerprint == load_preferences("synthetic:n=50,bias=1.0,seed=3").fingerprint
    with pytest.raises(ConfigError, match="bad synthetic option"):
        load_preferences("synthetic:size=5")


def test_hub_id_parsing():
    assert parse_hub_id("org/prefs") == ("org/prefs", None, "train")
    assert parse_hub_id("org/prefs:cfg@test") == ("org/prefs", "cfg", "test")


def test_hub_id_not_cached_offline_is_a_clear_error():
    with pytest.raises(DataError, match="Offline mode is on by default"):
        load_preferences("nobody-here/no-such-dataset@train")


def test_hub_dataset_is_read_through_datasets(monkeypatch):
    import datasets

    calls = []

    def fake_load_dataset(name, config=None, split=None):
        calls.append((name, config, split))
        return datasets.Dataset.from_list([GOOD, {**GOOD, "chosen": "sure"}])

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    loaded = load_preferences("org/prefs:main@test")
    assert calls == [("org/prefs", "main", "test")]
    assert loaded.total == 2 and list(loaded.rows["chosen"]) == ["yes", "sure"]


def test_dataset_saved_to_disk_is_a_source(tmp_path):
    import datasets

    datasets.Dataset.from_list([GOOD]).save_to_disk(str(tmp_path / "saved"))
    assert load_preferences(str(tmp_path / "saved")).total == 1


def test_missing_path_and_unknown_format_are_clear_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_preferences(str(tmp_path / "nope.jsonl"))
    with pytest.raises(ConfigError, match="unknown data format"):
        load_preferences("synthetic", format="alpaca")


def test_large_jsonl_streams_in_chunks(tmp_path, monkeypatch):
    import simpo_core.data.loading as data

    monkeypatch.setattr(data, "CHUNK_ROWS", 7)
    path = write_lines(tmp_path / "d.jsonl", [json.dumps({**GOOD, "chosen": f"c{i}"}).encode() for i in range(30)])
    rows = load_preferences(str(path)).rows
    assert list(rows["source_row"]) == list(range(1, 31)) and rows.index.is_unique


def test_dpo_en_demo_every_record_is_read(dpo_en_demo_path):
    loaded, facts = load_preferences(str(dpo_en_demo_path)), DPO_EN_DEMO_FACTS[dpo_en_demo_path.name]
    assert (loaded.total, loaded.format) == (facts["records"], "sharegpt")
    assert loaded.rows["load_reasons"].map(len).sum() == 0
    roles = loaded.rows["prompt"].map(lambda p: [m["role"] for m in p])
    assert roles.map(lambda r: r[0] == "system").sum() == facts["system"]
    assert roles.map(len).gt(1).sum() == facts["multi_turn"]  # a system turn makes a prompt multi-turn too
