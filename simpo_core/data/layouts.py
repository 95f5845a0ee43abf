"""Preference layouts in common use, detected and normalised to the canonical row.

Layouts (see docs/data.md for literal examples):
    flat            {"prompt": str, "chosen": str, "rejected": str}
    conversational  "prompt" str or messages (or absent); "chosen"/"rejected" message lists,
                    possibly repeating the prompt turns at their start (stripped here)
    sharegpt        "conversations" [{"from", "value"}] + "chosen"/"rejected" {"from", "value"}
    hh-rlhf         "chosen"/"rejected" full "\\n\\nHuman: ...\\n\\nAssistant: ..." transcripts
    openai          OpenAI / Azure OpenAI DPO fine-tuning: "input" {"messages", "tools", ...},
                    "preferred_output"/"non_preferred_output" [one assistant message]

`normalise_record` maps one record to `(prompt, chosen, rejected, reasons, details)`. It only
reshapes: values it can pass through unchanged (a null chosen, a prompt with a bad role) are
passed on for validation to name; what cannot be reshaped (a missing field, a transcript
without an assistant turn, a tool call) becomes a load reason here. Prompt messages come out
as `{"role", "content"}` only (see `_canonical_messages`).
"""

import re
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

LAYOUTS = ("flat", "conversational", "sharegpt", "hh-rlhf", "openai")
ASSISTANT_MARKER = "\n\nAssistant:"
SHAREGPT_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "model": "assistant",
    "chatgpt": "assistant",
    "system": "system",
}
_HH_TURN = re.compile(r"(?:^|\n\n)(Human|Assistant):")
_NO_REASONS: tuple[str, ...] = ()

# (prompt, chosen, rejected, reason codes, details)
Normalised = tuple[Any, Any, Any, tuple[str, ...], tuple[str, ...]]


class LayoutProblem(Exception):
    """A record that cannot be reshaped into the canonical row (reason code + detail)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def guess_layout(record: Any) -> str | None:
    """The layout one record looks like, from its keys and value types; None if unclear."""
    if not isinstance(record, dict):
        return None
    if "conversations" in record:
        return "sharegpt"
    if "input" in record and ("preferred_output" in record or "non_preferred_output" in record):
        return "openai"
    chosen = record.get("chosen")
    if "prompt" in record:
        return "conversational" if isinstance(chosen, list) else "flat"
    if isinstance(chosen, list):
        return "conversational"
    if isinstance(chosen, str) and ASSISTANT_MARKER in chosen:
        return "hh-rlhf"
    return None


def detect_layout(records: Iterable[Any]) -> str | None:
    """The most common layout among `records` (a sample); None when none is recognisable."""
    votes = Counter(layout for layout in map(guess_layout, records) if layout is not None)
    return votes.most_common(1)[0][0] if votes else None


def normalise_record(record: Any, layout: str) -> Normalised:
    """Reshape one parsed record of `layout` into canonical values plus load reasons."""
    if not isinstance(record, dict):
        kind = type(record).__name__
        return None, None, None, ("not_an_object",), (f"record is a JSON {kind}, expected an object",)
    missing = [key for key in _REQUIRED[layout] if key not in record]
    if missing:
        detail = f"{layout} record lacks field(s) {', '.join(missing)}; add them or pass the right --format"
        return None, None, None, ("missing_field",), (detail,)
    try:
        prompt, chosen, rejected = _NORMALISERS[layout](record)
    except LayoutProblem as problem:
        return None, None, None, (problem.reason,), (problem.detail,)
    return _canonical_messages(prompt), chosen, rejected, _NO_REASONS, _NO_REASONS


def _canonical_messages(prompt: Any) -> Any:
    # Canonical messages are {"role", "content"}, in that order; other keys (name, weight, ...)
    # are dropped here, for every layout. Training reads only role and content, and one message
    # type keeps valid.parquet's schema the same across rows and chunks: keys that some rows
    # carry and others not (or that are null everywhere) made Arrow build struct columns it
    # could not write. The quarantine and the fingerprint still see the original record.
    if not isinstance(prompt, list):
        return prompt  # junk goes on to validation as it is
    return [
        {"role": m["role"], "content": m["content"]} if isinstance(m, dict) and "role" in m and "content" in m else m
        for m in prompt
    ]


def _flat(record: dict) -> tuple[Any, Any, Any]:
    prompt = record["prompt"]
    if isinstance(prompt, str):
        prompt = [{"role": "user", "content": prompt}]
    return prompt, record["chosen"], record["rejected"]


def _conversational(record: dict) -> tuple[Any, Any, Any]:
    chosen = _message_list(record["chosen"], "chosen")
    rejected = _message_list(record["rejected"], "rejected")
    if "prompt" in record and record["prompt"] is not None:
        prompt_value = record["prompt"]
        prompt = [{"role": "user", "content": prompt_value}] if isinstance(prompt_value, str) else prompt_value
        if isinstance(prompt, list):
            chosen = _strip_prefix(chosen, prompt)
            rejected = _strip_prefix(rejected, prompt)
    else:
        # No prompt field: the turns chosen and rejected share are the prompt.
        shared = _shared_prefix_length(chosen, rejected)
        prompt, chosen, rejected = chosen[:shared], chosen[shared:], rejected[shared:]
    return prompt, _single_reply(chosen, "chosen"), _single_reply(rejected, "rejected")


def _sharegpt(record: dict) -> tuple[Any, Any, Any]:
    turns = record["conversations"]
    if not isinstance(turns, list):
        raise LayoutProblem("malformed_messages", f"conversations must be a list of turns, got {type(turns).__name__}")
    prompt = [_sharegpt_turn(turn, f"conversations[{index}]") for index, turn in enumerate(turns)]
    system = record.get("system")
    if isinstance(system, str) and system.strip():
        prompt.insert(0, {"role": "system", "content": system})
    return prompt, _sharegpt_reply(record["chosen"], "chosen"), _sharegpt_reply(record["rejected"], "rejected")


def _hh_rlhf(record: dict) -> tuple[Any, Any, Any]:
    chosen_prompt, chosen = _split_transcript(record["chosen"], "chosen")
    rejected_prompt, rejected = _split_transcript(record["rejected"], "rejected")
    if chosen_prompt != rejected_prompt:
        raise LayoutProblem(
            "prompt_mismatch", "chosen and rejected transcripts differ before their last Assistant turn"
        )
    return _transcript_turns(chosen_prompt), chosen, rejected


def _openai(record: dict) -> tuple[Any, Any, Any]:
    source = record["input"]
    messages = source.get("messages") if isinstance(source, dict) else None
    if not isinstance(messages, list):
        raise LayoutProblem("malformed_messages", "input must be an object with a 'messages' list")
    for key in ("tools", "functions"):
        if source.get(key):
            raise LayoutProblem(
                "tool_use", f"input carries {key} ({len(source[key])} defined); tool-calling pairs cannot be trained"
            )
    prompt = [_openai_message(message, f"input.messages[{index}]") for index, message in enumerate(messages)]
    return prompt, _openai_reply(record, "preferred_output"), _openai_reply(record, "non_preferred_output")


def _openai_message(message: Any, where: str) -> Any:
    if not isinstance(message, dict):
        return message  # validation names it
    if message.get("tool_calls") or message.get("function_call") or message.get("role") in ("tool", "function"):
        raise LayoutProblem("tool_use", f"{where} is a tool call or tool result; tool-calling pairs cannot be trained")
    return {**message, "content": _openai_text(message.get("content"))} if "content" in message else message


def _openai_reply(record: dict, field: str) -> Any:
    value = record[field]
    if isinstance(value, dict):
        value = [value]  # one message not wrapped in a list
    if not isinstance(value, list) or len(value) != 1 or not isinstance(value[0], dict):
        count = f"{len(value)} items" if isinstance(value, list) else type(value).__name__
        raise LayoutProblem("malformed_messages", f"{field} must be a list of one assistant message, got {count}")
    message = _openai_message(value[0], f"{field}[0]")
    if message.get("role") != "assistant" or not isinstance(message.get("content"), str):
        raise LayoutProblem(
            "malformed_messages",
            f"{field}[0] must be an assistant text message, got role {message.get('role')!r} "
            f"with {type(message.get('content')).__name__} content",
        )
    return message["content"]


def _openai_text(content: Any) -> Any:
    # Content may be a list of parts; text parts are joined, anything else stays for validation.
    if (
        isinstance(content, list)
        and content
        and all(
            isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)
            for part in content
        )
    ):
        return "".join(part["text"] for part in content)
    return content


def _message_list(value: Any, field: str) -> list[dict]:
    if not isinstance(value, list) or not all(isinstance(m, dict) and "role" in m and "content" in m for m in value):
        raise LayoutProblem("malformed_messages", f"{field} must be a list of {{'role', 'content'}} messages")
    return value


def _strip_prefix(messages: list[dict], prefix: list) -> list[dict]:
    if len(messages) > len(prefix) and _same_turns(messages[: len(prefix)], prefix):
        return messages[len(prefix) :]
    return messages


def _shared_prefix_length(first: list[dict], second: list[dict]) -> int:
    limit = min(len(first), len(second)) - 1
    shared = 0
    while shared < limit and _same_turns([first[shared]], [second[shared]]):
        shared += 1
    return shared


def _same_turns(left: list, right: list) -> bool:
    def key(message: Any) -> Any:
        return (message.get("role"), message.get("content")) if isinstance(message, dict) else message

    return [key(m) for m in left] == [key(m) for m in right]


def _single_reply(messages: list[dict], field: str) -> Any:
    if len(messages) != 1 or messages[0].get("role") != "assistant":
        roles = [m.get("role") for m in messages]
        raise LayoutProblem(
            "malformed_messages",
            f"{field} must end with exactly one assistant turn after the prompt, got roles {roles}",
        )
    return messages[0]["content"]


def _sharegpt_turn(turn: Any, where: str) -> dict:
    if not isinstance(turn, dict):
        raise LayoutProblem("malformed_messages", f"{where} must be an object with 'from' and 'value'")
    speaker = turn.get("from", turn.get("role"))
    if speaker is None or not ("value" in turn or "content" in turn):
        raise LayoutProblem("malformed_messages", f"{where} lacks 'from' or 'value'")
    content = turn["value"] if "value" in turn else turn["content"]
    role = SHAREGPT_ROLES.get(speaker, speaker) if isinstance(speaker, str) else speaker
    return {"role": role, "content": content}


def _sharegpt_reply(value: Any, field: str) -> Any:
    if not isinstance(value, dict):
        return value  # a plain string (or junk) goes on to validation as it is
    turn = _sharegpt_turn(value, field)
    if turn["role"] != "assistant":
        raise LayoutProblem("bad_role", f"{field} must come from gpt/assistant, got {value.get('from')!r}")
    return turn["content"]


def _split_transcript(value: Any, field: str) -> tuple[str, str]:
    if not isinstance(value, str):
        reason = "null_value" if value is None else "not_a_string"
        raise LayoutProblem(reason, f"{field} must be a transcript string, got {type(value).__name__}")
    cut = value.rfind(ASSISTANT_MARKER)
    if cut < 0:
        raise LayoutProblem("malformed_transcript", f"{field} has no '\\n\\nAssistant:' turn")
    reply = value[cut + len(ASSISTANT_MARKER) :]
    return value[:cut], reply[1:] if reply.startswith(" ") else reply


def _transcript_turns(transcript: str) -> list[dict]:
    parts = _HH_TURN.split(transcript)
    if parts[0].strip() or len(parts) < 3:
        raise LayoutProblem(
            "malformed_transcript", "transcript must start with '\\n\\nHuman:' before the last Assistant turn"
        )
    speakers, texts = parts[1::2], parts[2::2]
    return [{"role": "user" if s == "Human" else "assistant", "content": t.strip()} for s, t in zip(speakers, texts)]


_REQUIRED: dict[str, tuple[str, ...]] = {
    "flat": ("prompt", "chosen", "rejected"),
    "conversational": ("chosen", "rejected"),
    "sharegpt": ("conversations", "chosen", "rejected"),
    "hh-rlhf": ("chosen", "rejected"),
    "openai": ("input", "preferred_output", "non_preferred_output"),
}
_NORMALISERS: dict[str, Callable[[dict], tuple[Any, Any, Any]]] = {
    "flat": _flat,
    "conversational": _conversational,
    "sharegpt": _sharegpt,
    "hh-rlhf": _hh_rlhf,
    "openai": _openai,
}
