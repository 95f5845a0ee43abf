"""PreferenceDataset(path): the seed's len / indexing / stats() on top of the loader."""

import json

import pytest

from simpo_core import PreferenceDataset
from simpo_core.errors import DataError
from tests.conftest import DPO_EN_DEMO_FACTS


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_len_indexing_and_stats(tmp_path):
    path = write_jsonl(
        tmp_path / "d.jsonl",
        [
            {"prompt": "p1", "chosen": "abcd", "rejected": "ab"},
            {"prompt": "p2", "chosen": "ab", "rejected": "abcdef"},
        ],
    )
    dataset = PreferenceDataset(path)
    assert len(dataset) == 2
    assert dataset[1] == {"prompt": [{"role": "user", "content": "p2"}], "chosen": "ab", "rejected": "abcdef"}
    assert dataset.stats() == {"count": 2, "avg_chosen_length": 3.0, "avg_rejected_length": 4.0}
    assert [pair["chosen"] for pair in dataset] == ["abcd", "ab"]


def test_reads_validated_parquet(tmp_path):
    from simpo_core.data.loading import load_preferences
    from simpo_core.data.validation import validate_preferences

    result = validate_preferences(load_preferences("synthetic:n=30"), tmp_path)
    dataset = PreferenceDataset(result.valid_path)
    assert len(dataset) == 30 and dataset[0]["prompt"] == result.valid["prompt"][0]


def test_unusable_rows_name_the_row_and_the_fix(tmp_path):
    path = write_jsonl(
        tmp_path / "d.jsonl",
        [{"prompt": "p", "chosen": "a", "rejected": "b"}, {"prompt": "p", "chosen": "", "rejected": "b"}],
    )
    with pytest.raises(DataError, match=r"row 2: chosen is empty.*simpo validate"):
        PreferenceDataset(path)


def test_dpo_en_demo(dpo_en_demo_path):
    dataset = PreferenceDataset(dpo_en_demo_path)
    assert dataset.stats()["count"] == DPO_EN_DEMO_FACTS[dpo_en_demo_path.name]["records"]
    assert dataset[0]["prompt"][-1]["role"] == "user"
