"""The OpenAI / Azure OpenAI DPO fine-tuning layout, and records that match no layout."""

import json
from typing import get_args

import pytest

from simpo_core.data.layouts import LAYOUTS, guess_layout, normalise_record
from simpo_core.data.loading import load_records
from simpo_core.data.settings import Layout, ValidateSettings
from simpo_core.data.validation_stream import validate_source


def openai_row(i=0, **input_fields):
    """One row as the OpenAI DPO fine-tuning format writes it: a system turn and two user turns."""
    return {
        "input": {
            "messages": [
                {"role": "system", "content": "Answer briefly."},
                {"role": "user", "content": f"Name a colour ({i})."},
                {"role": "assistant", "content": "Blue."},
                {"role": "user", "content": f"Another one ({i})?", "name": "ann"},
            ],
            "tools": [],
            "parallel_tool_calls": True,
            **input_fields,
        },
        "preferred_output": [{"role": "assistant", "content": f"Green {i}."}],
        "non_preferred_output": [{"role": "assistant", "content": f"I will not {i}."}],
    }


TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
CALL = [{"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]


def with_messages(*extra):
    row = openai_row()
    row["input"]["messages"] = row["input"]["messages"][:2] + list(extra) + [{"role": "user", "content": "So?"}]
    return row


def with_output(field, value):
    return {**openai_row(), field: value}


def test_openai_rows_keep_the_system_turn_and_every_turn_as_role_and_content():
    assert guess_layout(openai_row()) == "openai" and "openai" in LAYOUTS
    prompt, chosen, rejected, reasons, _ = normalise_record(openai_row(3), "openai")
    assert [m["role"] for m in prompt] == ["system", "user", "assistant", "user"]
    assert prompt[3] == {"role": "user", "content": "Another one (3)?"}  # `name` dropped: canonical messages
    assert (chosen, rejected, reasons) == ("Green 3.", "I will not 3.", ())


def test_openai_export_is_detected_and_every_row_is_valid(tmp_path):
    """Before: every row quarantined as a flat record lacking prompt/chosen/rejected."""
    data = tmp_path / "azure_dpo.jsonl"
    data.write_text("".join(json.dumps(openai_row(i)) + "\n" for i in range(12)))
    result = validate_source(str(data), tmp_path / "out", ValidateSettings(max_invalid_fraction=0.0))
    report = result.report()
    assert (report["total"], report["valid"], report["quarantined"]) == (12, 12, 0)
    assert report["format"] == "openai" and report["formats"] == {"openai": 12}


def test_format_openai_can_be_forced():
    assert get_args(Layout) == LAYOUTS  # the --format choices are the layouts the loader knows
    assert ValidateSettings(format="openai").format == "openai"
    loaded = load_records([openai_row(), {"prompt": "p", "chosen": "a", "rejected": "b"}], format="openai")
    assert list(loaded.rows["load_reasons"]) == [(), ("missing_field",)]


def test_content_given_as_text_parts_is_joined():
    row = with_output(
        "preferred_output",
        [{"role": "assistant", "content": [{"type": "text", "text": "Gre"}, {"type": "text", "text": "en."}]}],
    )
    assert normalise_record(row, "openai")[1] == "Green."


@pytest.mark.parametrize(
    "row, reason, words",
    [
        (openai_row(tools=[TOOL]), "tool_use", "input carries tools (1 defined)"),
        (openai_row(functions=[TOOL["function"]]), "tool_use", "input carries functions"),
        (with_messages({"role": "assistant", "content": None, "tool_calls": CALL}), "tool_use", "input.messages[2]"),
        (with_messages({"role": "tool", "tool_call_id": "c1", "content": "sunny"}), "tool_use", "tool result"),
        (
            with_output("preferred_output", [{"role": "assistant", "content": None, "tool_calls": CALL}]),
            "tool_use",
            "preferred_output[0] is a tool call",
        ),
        (
            with_output(
                "non_preferred_output", [{"role": "assistant", "content": "a"}, {"role": "assistant", "content": "b"}]
            ),
            "malformed_messages",
            "non_preferred_output must be a list of one assistant message, got 2 items",
        ),
        (
            with_output("preferred_output", [{"role": "user", "content": "a"}]),
            "malformed_messages",
            "preferred_output[0] must be an assistant text message, got role 'user'",
        ),
        (
            {**openai_row(), "input": "just text"},
            "malformed_messages",
            "input must be an object with a 'messages' list",
        ),
    ],
)
def test_rows_that_cannot_be_trained_are_quarantined_with_a_clear_reason(row, reason, words):
    loaded = load_records([openai_row(1), row])
    assert loaded.format == "openai"
    assert loaded.rows["load_reasons"][0] == () and loaded.rows["load_reasons"][1] == (reason,)
    assert words in loaded.rows["load_details"][1][0]


def test_records_in_no_known_layout_say_so_and_name_their_keys(tmp_path):
    """Before: quarantined as a flat record missing prompt/chosen/rejected, the file called flat."""
    data = tmp_path / "qa.jsonl"
    data.write_text('{"question": "q", "answer": "a", "score": 1}\n' * 2)
    result = validate_source(str(data), tmp_path / "out", ValidateSettings(max_invalid_fraction=1.0))
    line = json.loads(result.quarantine_path.read_text().splitlines()[0])
    assert line["reasons"] == ["unknown_layout"]
    assert line["details"][0].startswith(
        "no supported layout matches these keys: question, answer, score; "
        "supported: flat, conversational, sharegpt, hh-rlhf, openai"
    )
    assert result.format == "unknown" and result.summary["quarantined"] == result.summary["total"] == 2
