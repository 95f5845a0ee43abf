"""Validation: one bad row of each kind among good ones gets exactly that reason."""

import json

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simpo_core.data.loading import load_preferences, load_records
from simpo_core.data.settings import ValidateSettings
from simpo_core.data.validation import append_quarantine, validate_preferences
from simpo_core.errors import ConfigError, DataError
from simpo_core.tiny_model import build_tiny_tokenizer
from tests.conftest import DPO_EN_DEMO_FACTS

ALL_ROWS = ValidateSettings(max_invalid_fraction=1.0)  # no limit: every test counts its own rows


def good(i):
    return {"prompt": f"question {i}", "chosen": f"good answer {i}", "rejected": f"bad answer {i}"}


GOODS = [good(i) for i in range(20)]
BAD_RECORDS = {
    "null_value": {"prompt": "q", "chosen": None, "rejected": "b"},
    "not_a_string": {"prompt": "q", "chosen": 42, "rejected": "b"},
    "malformed_messages": {"prompt": [{"role": "user"}], "chosen": "a", "rejected": "b"},
    "bad_role": {"prompt": [{"role": "robot", "content": "q"}], "chosen": "a", "rejected": "b"},
    "empty_message": {"prompt": [{"role": "user", "content": "  "}], "chosen": "a", "rejected": "b"},
    "last_turn_not_user": {
        "prompt": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "x"}],
        "chosen": "a",
        "rejected": "b",
    },
    "empty_response": {"prompt": "q", "chosen": "a", "rejected": " \n\t"},
    "identical_responses": {"prompt": "q", "chosen": "same", "rejected": "  same "},
    "duplicate_pair": good(3),
    "invalid_unicode": {"prompt": "q", "chosen": "broken \udce9 text", "rejected": "b"},
    "missing_field": {"prompt": "q", "chosen": "a"},
    "not_an_object": ["q", "a", "b"],
}


def validate(records, tmp_path, tokenizer=None, **settings):
    settings.setdefault("max_invalid_fraction", 1.0)
    return validate_preferences(
        load_records(records), tmp_path, ValidateSettings.from_values(settings), tokenizer=tokenizer
    )


def quarantine(path):
    # JSON Lines end at "\n" only: str.splitlines would also split inside a record at U+0085,
    # U+2028 or U+2029, which json.dumps(ensure_ascii=False) leaves as they are.
    return [json.loads(line) for line in path.read_text(encoding="utf-8").split("\n") if line]


@pytest.mark.parametrize("reason", sorted(BAD_RECORDS))
def test_one_bad_row_gets_exactly_its_reason(reason, tmp_path):
    records = GOODS[:10] + [BAD_RECORDS[reason]] + GOODS[10:]
    result = validate(records, tmp_path)
    assert result.summary["reasons"] == {reason: 1}
    assert (result.summary["valid"], result.summary["quarantined"]) == (20, 1)
    (line,) = quarantine(result.quarantine_path)
    assert (line["source_row"], line["reasons"]) == (11, [reason])
    assert line["details"] and line["source_file"] == "memory"


def test_invalid_json_line_is_quarantined_with_its_line_number(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join([json.dumps(GOODS[0]), '{"prompt": oops}', json.dumps(GOODS[1])]) + "\n")
    result = validate_preferences(load_preferences(str(path)), tmp_path / "out", ALL_ROWS)
    (line,) = quarantine(result.quarantine_path)
    assert line["reasons"] == ["invalid_json"] and line["source_row"] == 2
    assert line["record"] == '{"prompt": oops}'


@pytest.mark.parametrize(
    "limits, reason",
    [({"max_prompt_tokens": 40}, "prompt_too_long"), ({"max_response_tokens": 30}, "response_too_long")],
)
def test_token_limits(limits, reason, tmp_path):
    long_one = {"prompt": "q" * 60, "chosen": "c" * 60, "rejected": "r"}
    result = validate(GOODS + [long_one], tmp_path, tokenizer=build_tiny_tokenizer(), **limits)
    assert result.summary["reasons"] == {reason: 1}


def test_outputs_hold_every_row(tmp_path):
    records = GOODS + [BAD_RECORDS["null_value"], BAD_RECORDS["bad_role"]]
    result = validate(records, tmp_path)
    valid = pd.read_parquet(result.valid_path)
    assert len(valid) + len(quarantine(result.quarantine_path)) == 22
    assert list(valid.columns[:4]) == ["prompt", "chosen", "rejected", "source_row"]
    assert list(valid["prompt"][0][0].keys()) == ["role", "content"]
    assert result.summary["total"] == result.summary["valid"] + result.summary["quarantined"] == 22


def test_too_many_invalid_rows_fail_after_writing_both_files(tmp_path):
    records = GOODS[:9] + [BAD_RECORDS["empty_response"]]
    with pytest.raises(DataError, match=r"1 of 10 rows \(10.0%\).*empty_response \(1\)") as error:
        validate(records, tmp_path, max_invalid_fraction=0.05)
    assert error.value.summary["quarantined"] == 1
    assert (tmp_path / "valid.parquet").exists() and len(quarantine(tmp_path / "quarantine.jsonl")) == 1


def test_bad_arguments_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="max_invalid_fraction"):
        validate(GOODS, tmp_path, max_invalid_fraction=1.5)
    with pytest.raises(ConfigError, match="need a tokenizer"):
        validate(GOODS, tmp_path, max_prompt_tokens=10)


def test_append_quarantine_records_rows_dropped_later(tmp_path):
    result = validate(GOODS, tmp_path)
    assert append_quarantine(result.quarantine_path, result.valid.iloc[:2], "length_rebalance") == 2
    lines = quarantine(result.quarantine_path)
    assert [line["reasons"] for line in lines] == [["length_rebalance"]] * 2
    assert json.loads(lines[0]["record"])["chosen"] == "good answer 0"
    assert lines[1]["source_row"] == 2


def test_dpo_en_demo_every_record_accounted_for(dpo_en_demo_path, tmp_path):
    result = validate_preferences(load_preferences(str(dpo_en_demo_path)), tmp_path)
    summary, facts = result.summary, DPO_EN_DEMO_FACTS[dpo_en_demo_path.name]
    assert summary["total"] == facts["records"] == summary["valid"] + summary["quarantined"]
    assert summary["reasons"] == {"duplicate_pair": facts["duplicates"]}
    originals = json.loads(dpo_en_demo_path.read_text())
    for line in quarantine(result.quarantine_path):
        # A true duplicate: the same record appears earlier in the file.
        assert originals[line["source_row"] - 1] in originals[: line["source_row"] - 1]


messages = st.lists(
    st.fixed_dictionaries(
        {"role": st.sampled_from(["user", "assistant", "system", "bot", ""]), "content": st.text(max_size=5)}
    ),
    max_size=3,
)
text_or_junk = st.one_of(
    st.none(),
    st.text(max_size=8),
    st.text(alphabet=st.characters(categories=["Cs"]), max_size=2),
    st.integers(),
    messages,
)
junk_records = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "prompt": text_or_junk,
            "chosen": text_or_junk,
            "rejected": text_or_junk,
            "conversations": text_or_junk,
        },
    ),
    st.integers(),
    st.text(max_size=5),
    st.lists(st.integers(), max_size=2),
    st.none(),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(records=st.lists(junk_records, max_size=12))
def test_random_junk_never_crashes_and_every_row_is_counted(records, tmp_path):
    result = validate(records, tmp_path)
    summary = result.summary
    assert summary["total"] == len(records) == summary["valid"] + summary["quarantined"]
    assert len(quarantine(result.quarantine_path)) == summary["quarantined"]
    assert len(pd.read_parquet(result.valid_path)) == summary["valid"]


@pytest.mark.parametrize(
    "name, content",
    [
        ("escaped.jsonl", b'{"prompt": "q", "chosen": "a\\udc80b", "rejected": "b"}\n'),
        ("raw.json", b'[{"prompt": "q", "chosen": "a\xffb", "rejected": "b"}]'),
        ("raw.csv", b"prompt,chosen,rejected\nq,a\xffb,b\n"),
    ],
)
def test_invalid_unicode_inside_files(name, content, tmp_path):
    path = tmp_path / name
    path.write_bytes(content)
    result = validate_preferences(load_preferences(str(path)), tmp_path / "out", ALL_ROWS)
    assert result.summary["reasons"] == {"invalid_unicode": 1}
    assert "chosen" in quarantine(result.quarantine_path)[0]["details"][0]
