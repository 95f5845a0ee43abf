"""Streaming validation writes what the in-memory path writes, chunk boundaries or not."""

import json

import numpy as np
import pandas as pd
import pytest

from simpo_core.data.loading import load_preferences
from simpo_core.data.settings import ValidateSettings
from simpo_core.data.validation import validate_preferences
from simpo_core.data.validation_stream import PairDigests, validate_source
from simpo_core.errors import DataError
from simpo_core.tiny_model import build_tiny_tokenizer


def good(i):
    return {"prompt": f"question {i}", "chosen": f"good answer {i}" + "!" * (i % 7), "rejected": f"bad answer {i}"}


# Row numbers are 1-based. With chunk_rows=4 the chunks are rows 1-4, 5-8, 9-12, ...
MIXED = [
    good(0),
    good(1),
    good(2),
    {"prompt": "q", "chosen": "same", "rejected": " same"},  # identical_responses (row 4)
    good(1),  # duplicate of row 2, in the next chunk
    "not json",
    {"prompt": "q", "chosen": "same", "rejected": " same"},  # identical + duplicate of row 4
    {"prompt": [{"role": "robot", "content": "q"}], "chosen": "a", "rejected": "b"},  # bad_role
    {"prompt": [{"role": "robot", "content": "q"}], "chosen": "a", "rejected": "b"},  # bad_role + duplicate of row 8
    {"prompt": "q", "chosen": None, "rejected": "b"},
    good(3),
    good(3),  # duplicate inside one chunk
    good(0),  # duplicate of row 1, three chunks later
    {"prompt": "q", "chosen": 42, "rejected": "b"},
    good(4),
    good(5) | {"chosen": "x" * 80},
    good(6),  # row 16 is over the response limit below
]


def write_jsonl(path, records):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


def outputs(result):
    summary = {k: v for k, v in result.summary.items() if not k.endswith("_path")}
    return summary, result.quarantine_path.read_text(), pd.read_parquet(result.valid_path)


@pytest.mark.parametrize("chunk_rows", [1, 4, 5, 1000])
@pytest.mark.parametrize("limit", [None, 40])
def test_streamed_files_and_summary_equal_the_in_memory_ones(tmp_path, chunk_rows, limit):
    data = write_jsonl(tmp_path / "mixed.jsonl", MIXED)
    tokenizer = build_tiny_tokenizer() if limit else None
    settings = ValidateSettings(max_invalid_fraction=1.0, max_response_tokens=limit)
    expected = validate_preferences(load_preferences(str(data)), tmp_path / "memory", settings, tokenizer=tokenizer)
    streamed = validate_source(str(data), tmp_path / "stream", settings, tokenizer=tokenizer, chunk_rows=chunk_rows)
    want_summary, want_quarantine, want_valid = outputs(expected)
    got_summary, got_quarantine, got_valid = outputs(streamed)
    assert got_summary == want_summary
    assert got_quarantine == want_quarantine  # same rows, reasons (in order) and details
    pd.testing.assert_frame_equal(got_valid, want_valid)
    assert streamed.valid is None and streamed.summary["total"] == len(MIXED) and streamed.format == "flat"
    assert (streamed.source, streamed.fingerprint) == (expected.source, expected.fingerprint)


def test_duplicates_of_earlier_chunks_are_quarantined_with_the_schema_order_of_reasons(tmp_path):
    data = write_jsonl(tmp_path / "mixed.jsonl", MIXED)
    result = validate_source(str(data), tmp_path / "out", ValidateSettings(max_invalid_fraction=1.0), chunk_rows=4)
    lines = [json.loads(line) for line in result.quarantine_path.read_text().splitlines()]
    reasons = {line["source_row"]: line["reasons"] for line in lines}
    assert reasons[5] == ["duplicate_pair"] and reasons[13] == ["duplicate_pair"] and reasons[12] == ["duplicate_pair"]
    assert reasons[7] == ["identical_responses", "duplicate_pair"]
    assert reasons[9] == ["duplicate_pair", "bad_role"]
    assert result.summary["total"] == result.summary["valid"] + result.summary["quarantined"] == len(MIXED)


def test_over_the_invalid_fraction_fails_after_writing_both_files(tmp_path):
    data = write_jsonl(tmp_path / "mixed.jsonl", MIXED)
    with pytest.raises(DataError, match=r"10 of 17 rows \(58.8%\) failed validation") as failure:
        validate_source(str(data), tmp_path / "out", ValidateSettings(max_invalid_fraction=0.5), chunk_rows=4)
    summary = failure.value.summary
    assert (summary["total"], summary["valid"], summary["quarantined"]) == (17, 7, 10)
    assert len((tmp_path / "out" / "quarantine.jsonl").read_text().splitlines()) == 10
    assert len(pd.read_parquet(tmp_path / "out" / "valid.parquet")) == 7
    assert summary["source"] == str(data)


def test_message_fields_that_change_between_chunks_are_dropped_and_the_file_still_streams(tmp_path, caplog):
    """Canonical messages are role and content: a `name` on later rows changes no schema, so
    validation never falls back to holding the whole source in memory."""
    records = [
        {
            "prompt": [{"content": f"q{i}", "role": "user"} | ({"name": "ann"} if i >= 4 else {})],
            "chosen": "a",
            "rejected": "b",
        }
        for i in range(6)
    ]
    data = write_jsonl(tmp_path / "drift.jsonl", records)
    result = validate_source(str(data), tmp_path / "out", chunk_rows=2)
    prompts = pd.read_parquet(result.valid_path)["prompt"]
    assert [m for p in prompts for m in p] == [{"role": "user", "content": f"q{i}"} for i in range(6)]
    assert "validating it in memory instead" not in caplog.text and result.valid is None


def test_no_valid_row_still_writes_an_empty_valid_file(tmp_path):
    data = write_jsonl(tmp_path / "bad.jsonl", ["nope"] * 3)
    result = validate_source(str(data), tmp_path / "out", ValidateSettings(max_invalid_fraction=1.0), chunk_rows=2)
    assert len(pd.read_parquet(result.valid_path)) == 0 and result.summary["reasons"] == {"invalid_json": 3}


def test_load_preferences_hands_over_chunks_and_keeps_none(tmp_path):
    data = write_jsonl(tmp_path / "mixed.jsonl", MIXED)
    sizes = []
    loaded = load_preferences(str(data), on_chunk=lambda chunk: sizes.append(len(chunk)), chunk_rows=5)
    assert sizes == [5, 5, 5, 2] and loaded.total == 17 and loaded.rows.empty


def test_pair_digests_find_exactly_what_was_added_across_merged_runs():
    rng = np.random.default_rng(0)
    batches = [rng.bytes(16 * 50) for _ in range(9)]
    digests = PairDigests()
    for batch in batches:
        digests.add(np.frombuffer(batch, dtype="S16"))
    added = np.frombuffer(b"".join(batches), dtype="S16")
    fresh = np.frombuffer(rng.bytes(16 * 100), dtype="S16")
    assert digests.contains(added).all() and not digests.contains(fresh).any() and len(digests) == 450
