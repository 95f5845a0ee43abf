"""Layout detection and normalisation on literal examples of each layout."""

import json

import pytest

from simpo_core.data.layouts import detect_layout, guess_layout, normalise_record
from simpo_core.data.loading import load_records

FLAT = {"prompt": "What is 2+2?", "chosen": "4", "rejected": "5"}
CONVERSATIONAL = {
    "prompt": [{"role": "user", "content": "What is 2+2?"}],
    # The prompt turn is repeated at the start of chosen/rejected (UltraFeedback style).
    "chosen": [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "4"}],
    "rejected": [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "5"}],
}
CONVERSATIONAL_NO_PROMPT = {
    "chosen": [
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello."},
    ],
    "rejected": [
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Go away."},
    ],
}
SHAREGPT = {
    "conversations": [
        {"from": "system", "value": "You are kind."},
        {"from": "human", "value": "Hi"},
        {"from": "gpt", "value": "Hello! How can I help?"},
        {"from": "human", "value": "Tell me a joke."},
    ],
    "chosen": {"from": "gpt", "value": "Why did the chicken cross the road?"},
    "rejected": {"from": "gpt", "value": "No."},
}
HH_RLHF = {
    "chosen": "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: Capital of France?\n\nAssistant: Paris.",
    "rejected": "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: Capital of France?\n\nAssistant: London.",
}


@pytest.mark.parametrize(
    "record, layout",
    [
        (FLAT, "flat"),
        (CONVERSATIONAL, "conversational"),
        (CONVERSATIONAL_NO_PROMPT, "conversational"),
        (SHAREGPT, "sharegpt"),
        (HH_RLHF, "hh-rlhf"),
        ({"foo": 1}, None),
        ([1, 2], None),
    ],
)
def test_guess_layout(record, layout):
    assert guess_layout(record) == layout


def test_detect_layout_is_the_majority_and_none_when_unknown():
    assert detect_layout([HH_RLHF, HH_RLHF, FLAT, {"x": 1}]) == "hh-rlhf"
    assert detect_layout([{"x": 1}, 3]) is None


def test_flat_prompt_becomes_one_user_turn():
    assert normalise_record(FLAT, "flat")[:3] == ([{"role": "user", "content": "What is 2+2?"}], "4", "5")


def test_conversational_strips_the_repeated_prompt_turns():
    prompt, chosen, rejected, reasons, _ = normalise_record(CONVERSATIONAL, "conversational")
    assert (prompt, chosen, rejected, reasons) == ([{"role": "user", "content": "What is 2+2?"}], "4", "5", ())


def test_conversational_string_prompt_and_repeated_turn():
    record = {**CONVERSATIONAL, "prompt": "What is 2+2?"}
    assert normalise_record(record, "conversational")[:3] == ([{"role": "user", "content": "What is 2+2?"}], "4", "5")


def test_conversational_without_prompt_uses_the_shared_turns():
    prompt, chosen, rejected, _, _ = normalise_record(CONVERSATIONAL_NO_PROMPT, "conversational")
    assert [m["role"] for m in prompt] == ["system", "user"]
    assert (chosen, rejected) == ("Hello.", "Go away.")


def test_conversational_with_two_trailing_turns_is_malformed():
    record = {**CONVERSATIONAL, "chosen": CONVERSATIONAL["chosen"] + [{"role": "user", "content": "more"}]}
    assert normalise_record(record, "conversational")[3] == ("malformed_messages",)


def test_sharegpt_keeps_system_and_multi_turn_prompt():
    prompt, chosen, rejected, reasons, _ = normalise_record(SHAREGPT, "sharegpt")
    assert [m["role"] for m in prompt] == ["system", "user", "assistant", "user"]
    assert prompt[2]["content"] == "Hello! How can I help?"
    assert (chosen, rejected, reasons) == ("Why did the chicken cross the road?", "No.", ())


def test_sharegpt_top_level_system_field_is_prepended():
    record = {
        "conversations": [{"from": "human", "value": "Hi"}],
        "system": "Be brief.",
        "chosen": {"from": "gpt", "value": "Hi."},
        "rejected": {"from": "gpt", "value": "Hello there."},
    }
    assert normalise_record(record, "sharegpt")[0][0] == {"role": "system", "content": "Be brief."}


def test_hh_rlhf_splits_at_the_last_assistant_turn():
    prompt, chosen, rejected, reasons, _ = normalise_record(HH_RLHF, "hh-rlhf")
    assert prompt == [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Capital of France?"},
    ]
    assert (chosen, rejected, reasons) == ("Paris.", "London.", ())


@pytest.mark.parametrize(
    "record, reason",
    [
        ({"chosen": "\n\nHuman: Hi\n\nAssistant: a", "rejected": "\n\nHuman: Yo\n\nAssistant: b"}, "prompt_mismatch"),
        ({"chosen": "\n\nHuman: Hi\n\nAssistant: a", "rejected": "no turns at all"}, "malformed_transcript"),
        ({"chosen": "\n\nHuman: Hi\n\nAssistant: a"}, "missing_field"),
    ],
)
def test_hh_rlhf_problems(record, reason):
    assert normalise_record(record, "hh-rlhf")[3] == (reason,)


@pytest.mark.parametrize(
    "record, layout", [(FLAT, "flat"), (CONVERSATIONAL, "conversational"), (SHAREGPT, "sharegpt"), (HH_RLHF, "hh-rlhf")]
)
def test_load_records_detects_each_layout(record, layout):
    loaded = load_records([record, record])
    assert loaded.format == layout
    assert list(loaded.rows["load_reasons"]) == [(), ()]
    assert json.loads(loaded.rows["record"][0]) == record


def test_forced_format_reports_missing_fields_instead_of_guessing():
    loaded = load_records([FLAT], format="sharegpt")
    assert loaded.rows["load_reasons"][0] == ("missing_field",)
    assert "conversations" in loaded.rows["load_details"][0][0]
