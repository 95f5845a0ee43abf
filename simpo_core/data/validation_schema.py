"""The pandera schema of canonical preference rows, and the reason codes it reports.

Checks are vectorised where the column allows (Arrow `str` columns), and every check passes
values another check owns (a null, a non-string), so a bad row carries its true reason and
not a cascade. `collect_schema_reasons` runs the schema lazily, so all failures of all rows
are found in one pass, and turns pandera's failure cases into per-row reason codes.
"""

import re
from typing import Any

import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

from simpo_core.data.frames import prompt_keys
from simpo_core.data.schema import ROLES

_SURROGATE = re.compile("[\ud800-\udfff]")
# A value holding a lone surrogate always shows in its record's JSON text as an escape.
_ESCAPED_SURROGATE = r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}"

# reason code -> what was wrong and how to fix it ({field} is filled in)
REASON_HELP = {
    "invalid_json": "the line is not valid JSON; fix or remove it",
    "invalid_unicode": "{field} is not valid UTF-8 text; re-encode the source as UTF-8",
    "not_an_object": "the record is not a JSON object; each record must be {...}",
    "missing_field": "a required field is absent for this layout; add it or pass --format",
    "unknown_layout": "the record's keys match no supported layout; rename its fields or convert the file",
    "tool_use": "the pair carries tool definitions or tool calls, which cannot be trained as text",
    "malformed_transcript": "an HH-RLHF transcript must contain '\\n\\nHuman:' and '\\n\\nAssistant:' turns",
    "prompt_mismatch": "chosen and rejected transcripts must share the same prompt turns",
    "null_value": "{field} is null; give it a value",
    "not_a_string": "{field} must be a string",
    "malformed_messages": "{field} must be a non-empty list of {{'role', 'content'}} messages with string content",
    "bad_role": "{field} roles must be system (first turn only), user or assistant",
    "empty_message": "a {field} turn has empty or whitespace-only content",
    "last_turn_not_user": "the last {field} turn must be the user's",
    "empty_response": "{field} is empty or whitespace only",
    "identical_responses": "chosen and rejected are identical after trimming: the pair carries no preference",
    "duplicate_pair": "same prompt, chosen and rejected as an earlier row (the first one is kept)",
    "prompt_too_long": "{field} is over max_prompt_tokens; shorten it or raise the limit",
    "response_too_long": "{field} is over max_response_tokens; shorten it or raise the limit",
    "length_rebalance": "dropped by the length-balance audit (policy rebalance) to even out chosen-longer pairs",
}


def prompt_issue(prompt: Any) -> str | None:
    """The reason a prompt is not a valid message list, or None when it is."""
    if hasattr(prompt, "tolist") and not isinstance(prompt, str):
        prompt = prompt.tolist()
    if not isinstance(prompt, list) or not prompt:
        return "malformed_messages"
    for index, message in enumerate(prompt):
        if not isinstance(message, dict) or not isinstance(message.get("content"), str) or "role" not in message:
            return "malformed_messages"
        role = message["role"]
        if role not in ROLES or (role == "system" and index > 0):
            return "bad_role"
        if not message["content"].strip():
            return "empty_message"
    return None if prompt[-1]["role"] == "user" else "last_turn_not_user"


def invalid_unicode_fields(rows: pd.DataFrame) -> dict[Any, str]:
    """Rows whose prompt, chosen or rejected holds a lone surrogate (text that was not valid
    UTF-8), mapped to the first such field. Such rows never reach the schema: pandas' Arrow
    strings cannot hold them. Only rows whose record text shows an escaped surrogate are
    inspected, so the common case costs one vectorised regex."""
    suspects = rows["record"].str.contains(_ESCAPED_SURROGATE, regex=True).fillna(False).astype(bool)
    found: dict[Any, str] = {}
    for label, prompt, chosen, rejected in rows.loc[suspects, ["prompt", "chosen", "rejected"]].itertuples():
        field = _surrogate_field(prompt, chosen, rejected)
        if field:
            found[label] = field
    return found


def _surrogate_field(prompt: Any, chosen: Any, rejected: Any) -> str | None:
    contents = [m.get("content") for m in prompt if isinstance(m, dict)] if isinstance(prompt, list) else [prompt]
    for field, values in (("prompt", contents), ("chosen", [chosen]), ("rejected", [rejected])):
        if any(isinstance(v, str) and _SURROGATE.search(v) for v in values):
            return field
    return None


def _is_arrow_text(series: pd.Series) -> bool:
    return isinstance(series.dtype, pd.StringDtype)


def _is_string(series: pd.Series) -> pd.Series:
    if _is_arrow_text(series):
        return pd.Series(True, index=series.index)
    return series.map(lambda v: isinstance(v, str) or v is None)


def _stripped(series: pd.Series) -> pd.Series:
    if _is_arrow_text(series):
        return series.str.strip()
    return series.map(lambda v: v.strip() if isinstance(v, str) else None)


def _hashable_text(series: pd.Series) -> pd.Series:
    if _is_arrow_text(series):
        return series
    return series.map(lambda v: v if isinstance(v, str) else repr(v))


class PreferenceSchema(pa.DataFrameModel):
    """Canonical pairs: a valid message-list prompt and two distinct, non-empty responses."""

    prompt: Series[Any] = pa.Field(nullable=False)
    chosen: Series[Any] = pa.Field(nullable=False)
    rejected: Series[Any] = pa.Field(nullable=False)

    @pa.check("prompt", name="prompt_messages")
    def _prompt_is_messages(cls, prompts: pd.Series) -> pd.Series:
        # One pass; the exact reason (bad_role, empty_message, ...) is filled in afterwards.
        return prompts.map(lambda p: p is None or prompt_issue(p) is None)

    @pa.check("chosen", "rejected", name="not_a_string")
    def _response_is_string(cls, responses: pd.Series) -> pd.Series:
        return _is_string(responses)

    @pa.check("chosen", "rejected", name="empty_response")
    def _response_not_empty(cls, responses: pd.Series) -> pd.Series:
        return (_stripped(responses).str.len() > 0).fillna(True) | ~_is_string(responses)

    @pa.dataframe_check(name="identical_responses")
    def _responses_differ(cls, frame: pd.DataFrame) -> pd.Series:
        same = _stripped(frame["chosen"]) == _stripped(frame["rejected"])
        return ~same.fillna(False).astype(bool)

    @pa.dataframe_check(name="duplicate_pair")
    def _pair_is_first(cls, frame: pd.DataFrame) -> pd.Series:
        keys = pd.DataFrame(
            {
                "p": prompt_keys(frame["prompt"]),
                "c": _hashable_text(frame["chosen"]),
                "r": _hashable_text(frame["rejected"]),
            }
        )
        return ~keys.duplicated(keep="first")

    class Config:
        strict = False
        coerce = False


def collect_schema_reasons(frame: pd.DataFrame) -> dict[Any, list[tuple[str, str]]]:
    """Run `PreferenceSchema` lazily on `frame`; map each failing row label to its
    `(reason code, detail)` pairs. Rows absent from the result passed every check."""
    if frame.empty:
        return {}
    try:
        PreferenceSchema.validate(frame[["prompt", "chosen", "rejected"]], lazy=True)
    except pa.errors.SchemaErrors as errors:
        return _reasons_from_failures(errors.failure_cases, frame)
    return {}


def _reasons_from_failures(failures: pd.DataFrame, frame: pd.DataFrame) -> dict[Any, list[tuple[str, str]]]:
    unlocated = failures[failures["index"].isna()]
    if not unlocated.empty:  # a failure pandera could not pin to a row: a bug, not a data problem
        raise RuntimeError(f"schema failure without a row: {unlocated.to_dict('records')}")
    reasons: dict[Any, list[tuple[str, str]]] = {}
    for label, column, check in failures[["index", "column", "check"]].drop_duplicates().itertuples(index=False):
        code = _reason_code(check, column, label, frame)
        field = "chosen and rejected" if code in ("identical_responses", "duplicate_pair") else column
        entry = (code, REASON_HELP[code].format(field=field))
        row = reasons.setdefault(label, [])
        if entry not in row:
            row.append(entry)
    return reasons


def _reason_code(check: str, column: str, label: Any, frame: pd.DataFrame) -> str:
    if check == "not_nullable":
        return "null_value"
    if check == "prompt_messages":
        return prompt_issue(frame.at[label, "prompt"]) or "malformed_messages"
    return check
