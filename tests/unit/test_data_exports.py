"""Real exports read without surprises: byte-order marks, gzip, mixed layouts, extra message
keys and JSON errors worded once."""

import gzip
import json
import logging

import pandas as pd
import pytest

from simpo_core.data.loading import check_source, load_preferences
from simpo_core.data.settings import ValidateSettings
from simpo_core.data.validation import validate_preferences
from simpo_core.data.validation_stream import validate_source
from simpo_core.errors import DataError

ALL_ROWS = ValidateSettings(max_invalid_fraction=1.0)
BOM = b"\xef\xbb\xbf"


def flat(i):
    return {"prompt": f"question {i}", "chosen": f"good {i}", "rejected": f"bad {i}"}


def hh(i):
    return {
        "chosen": f"\n\nHuman: Capital {i}?\n\nAssistant: Paris {i}.",
        "rejected": f"\n\nHuman: Capital {i}?\n\nAssistant: London {i}.",
    }


def sharegpt(i):
    return {
        "conversations": [{"from": "system", "value": "Be kind."}, {"from": "human", "value": f"Hi {i}"}],
        "chosen": {"from": "gpt", "value": f"Hello {i}!"},
        "rejected": {"from": "gpt", "value": "Go away."},
    }


def jsonl(records):
    return "".join(json.dumps(r) + "\n" for r in records).encode()


def counts(result):
    return result.summary["total"], result.summary["valid"], result.summary["quarantined"]


# --- byte-order marks -------------------------------------------------------------------


def test_a_bom_costs_no_row_of_a_jsonl_file(tmp_path):
    """Before: the first row was quarantined as invalid_json ("Unexpected UTF-8 BOM")."""
    data = tmp_path / "bom.jsonl"
    data.write_bytes(BOM + jsonl(flat(i) for i in range(5)))
    result = validate_source(str(data), tmp_path / "out", ALL_ROWS)
    assert counts(result) == (5, 5, 0)


def test_a_json_array_with_a_bom_is_read(tmp_path):
    """Before: the whole file was refused."""
    data = tmp_path / "bom.json"
    data.write_bytes(BOM + json.dumps([flat(i) for i in range(3)]).encode())
    loaded = load_preferences(str(data))
    assert loaded.total == 3 and list(loaded.rows["chosen"]) == ["good 0", "good 1", "good 2"]


def test_a_csv_with_a_bom_keeps_its_first_column_name(tmp_path):
    data = tmp_path / "bom.csv"
    data.write_bytes(BOM + pd.DataFrame([flat(0), flat(1)]).to_csv(index=False).encode())
    loaded = load_preferences(str(data))
    assert list(loaded.rows["load_reasons"]) == [(), ()]
    assert list(json.loads(loaded.rows["record"][0])) == ["prompt", "chosen", "rejected"]


# --- gzip -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["d.jsonl.gz", "d.json.gz", "d.csv.gz"])
def test_gzipped_files_give_the_rows_of_the_plain_ones(tmp_path, name):
    """Before: refused as an unsupported file type '.gz'."""
    records = [hh(i) for i in range(4)]
    plain = name.removesuffix(".gz")
    if plain.endswith(".csv"):
        body = pd.DataFrame(records).to_csv(index=False).encode()
    else:
        body = jsonl(records) if plain.endswith(".jsonl") else json.dumps(records).encode()
    (tmp_path / plain).write_bytes(body)
    (tmp_path / name).write_bytes(gzip.compress(body))
    assert check_source(str(tmp_path / name)) == "file"
    zipped, unzipped = load_preferences(str(tmp_path / name)), load_preferences(str(tmp_path / plain))
    assert zipped.format == "hh-rlhf" and zipped.total == 4
    columns = ["prompt", "chosen", "rejected", "source_row", "load_reasons"]
    pd.testing.assert_frame_equal(zipped.rows[columns], unzipped.rows[columns])


def test_gzip_fingerprint_is_deterministic_and_follows_the_data_not_the_header(tmp_path):
    data = tmp_path / "d.jsonl.gz"
    body = jsonl(hh(i) for i in range(3))
    data.write_bytes(gzip.compress(body, mtime=1))
    first = load_preferences(str(data)).fingerprint
    data.write_bytes(gzip.compress(body, mtime=2))  # same rows, another gzip header
    assert load_preferences(str(data)).fingerprint == first
    data.write_bytes(gzip.compress(jsonl(hh(i) for i in range(4)), mtime=1))
    assert load_preferences(str(data)).fingerprint != first


def test_a_gzipped_jsonl_streams_in_chunks_like_the_in_memory_path(tmp_path):
    data = tmp_path / "d.jsonl.gz"
    data.write_bytes(gzip.compress(jsonl([hh(0), hh(1), "not json", hh(1), hh(2)])))
    streamed = validate_source(str(data), tmp_path / "s", ALL_ROWS, chunk_rows=2)
    memory = validate_preferences(load_preferences(str(data)), tmp_path / "m", ALL_ROWS)
    assert counts(streamed) == counts(memory) == (5, 3, 2)
    assert streamed.quarantine_path.read_text() == memory.quarantine_path.read_text()


def test_folders_list_gzipped_files_and_a_damaged_one_is_a_clear_error(tmp_path):
    (tmp_path / "a.jsonl.gz").write_bytes(gzip.compress(jsonl([flat(0)])))
    (tmp_path / "b.jsonl").write_bytes(jsonl([flat(1)]))
    assert load_preferences(str(tmp_path)).total == 2
    broken = tmp_path / "broken" / "c.jsonl.gz"
    broken.parent.mkdir()
    broken.write_bytes(gzip.compress(jsonl(flat(i) for i in range(50)))[:-30])
    with pytest.raises(DataError, match="is not a readable gzip file"):
        load_preferences(str(broken))


# --- files mixing layouts -----------------------------------------------------------------


MIXED = [flat(i) for i in range(6)] + [hh(i) for i in range(4)] + [sharegpt(i) for i in range(3)]


@pytest.mark.parametrize("chunk_rows", [3, 1000])
def test_each_row_of_a_mixed_file_is_read_in_its_own_layout(tmp_path, chunk_rows, caplog):
    """Before: valid 6 of 13 (the file was read as flat, the other 7 quarantined)."""
    data = tmp_path / "mixed.jsonl"
    data.write_bytes(jsonl(MIXED))
    with caplog.at_level(logging.WARNING, logger="simpo_core.data.frame_builder"):
        result = validate_source(str(data), tmp_path / "out", ValidateSettings(), chunk_rows=chunk_rows)
    assert counts(result) == (13, 13, 0)
    report = result.report()
    assert report["format"] == "mixed" and report["formats"] == {"flat": 6, "hh-rlhf": 4, "sharegpt": 3}
    assert "mixes layouts (flat 6 rows, hh-rlhf 4 rows, sharegpt 3 rows)" in caplog.text
    memory = validate_preferences(load_preferences(str(data)), tmp_path / "m", ValidateSettings())
    pd.testing.assert_frame_equal(pd.read_parquet(result.valid_path), pd.read_parquet(memory.valid_path))


def test_a_broken_row_of_another_layout_gets_that_layouts_reason(tmp_path):
    bad_hh = {**hh(9), "rejected": "\n\nHuman: Other?\n\nAssistant: London."}
    data = tmp_path / "mixed.jsonl"
    data.write_bytes(jsonl([flat(0), flat(1), bad_hh, {"prompt": "p", "chosen": None, "rejected": "b"}]))
    loaded = load_preferences(str(data))
    assert list(loaded.rows["load_reasons"]) == [(), (), ("prompt_mismatch",), ()]  # not a flat missing_field
    assert loaded.format == "mixed" and loaded.formats == {"flat": 3, "hh-rlhf": 1}


def test_a_forced_format_on_a_mixed_file_does_not_advise_losing_more_rows(tmp_path):
    data = tmp_path / "mixed.jsonl"
    data.write_bytes(jsonl(MIXED))
    with pytest.raises(DataError) as failure:
        validate_source(str(data), tmp_path / "out", ValidateSettings(format="flat"))
    message = str(failure.value)
    assert "7 of 13 rows" in message and "leave --format unset" in message
    assert "max_invalid_fraction (" not in message and "--max-invalid-fraction" not in message


def test_bad_data_still_names_the_invalid_fraction_option(tmp_path):
    data = tmp_path / "bad.jsonl"
    data.write_bytes(jsonl([flat(0)]) + b"not json\n")
    with pytest.raises(DataError, match=r"raise data.max_invalid_fraction \(--max-invalid-fraction\)"):
        validate_source(str(data), tmp_path / "out", ValidateSettings())


# --- message keys beyond role and content -----------------------------------------------


def test_a_null_message_name_does_not_crash_validation(tmp_path):
    """Before: ArrowInvalid "Struct child array #2 has length smaller than expected (20 < 40)"."""
    prompt = [{"role": "system", "content": "s"}, {"role": "user", "content": "q", "name": None}]
    data = tmp_path / "names.jsonl"
    data.write_bytes(jsonl({"prompt": prompt, "chosen": f"a{i}", "rejected": "b"} for i in range(20)))
    streamed = validate_source(str(data), tmp_path / "s", ALL_ROWS)
    memory = validate_preferences(load_preferences(str(data)), tmp_path / "m", ALL_ROWS)
    assert counts(streamed) == counts(memory) == (20, 20, 0)
    prompts = pd.read_parquet(streamed.valid_path)["prompt"]
    assert [list(m) for m in prompts[0]] == [["role", "content"], ["role", "content"]]


# --- JSON error wording -----------------------------------------------------------------


def test_json_errors_name_the_position_once(tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_bytes(b'{"prompt": "abc\n')
    detail = load_preferences(str(data)).rows["load_details"][0][0]
    assert detail == "line 1 is not valid JSON: Unterminated string starting at column 12"
    whole = tmp_path / "d.json"
    whole.write_bytes(b'[{"prompt": "abc]')
    with pytest.raises(DataError, match=r"\(Unterminated string starting at line 1, column 13\)"):
        load_preferences(str(whole))
