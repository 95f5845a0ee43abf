"""Prompts for on-policy generation, read and validated like pairs: nothing is lost.

Sources:
- a prompt-only file (JSONL, JSON, Parquet, CSV, gzip too) whose records carry `prompt` (text
  or chat messages) or `messages` (chat turns; a trailing assistant turn is left out);
- a preference file in any supported layout (its prompts);
- a `datasets` id, `name[:config][@split]`, with `prompt` or `messages` columns;
- `synthetic[:n=N,seed=S]`: the prompts of the embedded demo data.

Every prompt is either kept or written to the quarantine file with its reason:
`invalid_prompt` (no readable prompt), `empty_prompt` (no user turn with text),
`prompt_too_long` (more tokens than the training's `max_prompt_length`, which would cut it),
`duplicate_prompt` (the same turns seen earlier).
"""

import hashlib
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from simpo_core.data.schema import Message, prompt_to_messages
from simpo_core.errors import DataError

QUARANTINE_FILE = "prompts_quarantine.jsonl"
PREFERENCE_KEYS = ("chosen", "conversations", "preferred_output")  # a record of a preference file


@dataclass
class PromptSet:
    """The valid prompts of a source, what was quarantined and why, and their fingerprint."""

    source: str
    prompts: list[list[Message]]
    total: int
    reasons: dict[str, int] = field(default_factory=dict)
    quarantine_path: Path | None = None
    fingerprint: str = ""

    @property
    def quarantined(self) -> int:
        return self.total - len(self.prompts)

    def summary(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "total": self.total,
            "valid": len(self.prompts),
            "quarantined": self.quarantined,
            "reasons": self.reasons,
            "quarantine_path": str(self.quarantine_path) if self.quarantine_path else None,
            "fingerprint": self.fingerprint,
        }


def load_prompts(source: str, tokenizer: Any, max_prompt_length: int, out_dir: Path) -> PromptSet:
    """Read and validate the prompts of `source`; quarantined prompts go to `out_dir`.

    Raises:
        DataError: the source cannot be read, or not one prompt is valid.
    """
    from simpo_core.train.prompt_format import render_prompt_ids

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    quarantine_path = out_dir / QUARANTINE_FILE
    kept: list[list[Message]] = []
    seen: set[str] = set()
    reasons: Counter = Counter()
    total = 0
    with quarantine_path.open("w", encoding="utf-8") as quarantine:
        for row, value in read_prompt_records(source):
            total += 1
            messages, reason = _prompt_of(value)
            key = json.dumps(messages, ensure_ascii=False, sort_keys=True) if messages else ""
            if reason is None and len(render_prompt_ids(tokenizer, messages)) > max_prompt_length:
                reason = "prompt_too_long"
            if reason is None and key in seen:
                reason = "duplicate_prompt"
            if reason is not None:
                reasons[reason] += 1
                record = {"source_row": row, "reason": reason, "record": _text(value)}
                quarantine.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
                continue
            seen.add(key)
            kept.append(messages)
    if not kept:
        raise DataError(
            f"prompts {source}: none of {total} prompt(s) is usable ({dict(reasons)}); see {quarantine_path}"
        )
    digest = hashlib.sha256("\n".join(json.dumps(p, sort_keys=True) for p in kept).encode()).hexdigest()
    return PromptSet(source, kept, total, dict(reasons.most_common()), quarantine_path, digest)


def read_prompt_records(source: str) -> Iterator[tuple[int, Any]]:
    """`(row number, record)` for every record of `source` (see the module docstring)."""
    from simpo_core.data.loading import SYNTHETIC

    if source == SYNTHETIC or source.startswith(SYNTHETIC + ":"):
        yield from _synthetic_prompts(source)
        return
    path = Path(source).expanduser()
    if path.is_file():
        yield from _file_prompts(path)
        return
    if path.exists() or source.startswith((".", "/", "~")):
        raise DataError(
            f"prompts {source}: pass a prompt file (JSONL, JSON, Parquet or CSV), a dataset id or 'synthetic'"
        )
    yield from _hub_prompts(source)


def _file_prompts(path: Path) -> Iterator[tuple[int, Any]]:
    from simpo_core.data.readers import read_file

    records = read_file(path, hashlib.sha256())
    first = next(records, None)
    if first is None:
        raise DataError(f"prompts {path}: the file holds no records")
    if isinstance(first.value, dict) and any(key in first.value for key in PREFERENCE_KEYS):
        yield from _preference_prompts(str(path))
        return
    for record in (first, *records):
        yield record.source_row, None if record.reason else record.value


def _preference_prompts(source: str) -> Iterator[tuple[int, Any]]:
    """The prompt of every record of a preference file (a record that did not load is invalid)."""
    from simpo_core.data.loading import load_preferences

    rows = load_preferences(source).rows
    for row, prompt, load_reasons in zip(rows["source_row"], rows["prompt"], rows["load_reasons"]):
        yield int(row), None if len(load_reasons) else {"prompt": prompt}


def _synthetic_prompts(source: str) -> Iterator[tuple[int, Any]]:
    from simpo_core.data.loading import parse_synthetic_spec
    from simpo_core.data.synthetic import generate_pairs

    options = parse_synthetic_spec(source)
    pairs = generate_pairs(int(options["n"]), 0.0, int(options["seed"]))
    for row, pair in enumerate(pairs, start=1):
        yield row, {"prompt": pair["prompt"]}


def _hub_prompts(source: str) -> Iterator[tuple[int, Any]]:
    import datasets

    from simpo_core.data.loading import parse_hub_id

    name, config, split = parse_hub_id(source)
    try:
        dataset = datasets.load_dataset(name, config, split=split)
    except Exception as error:  # noqa: BLE001 (any hub or cache failure: say which source and why)
        raise DataError(f"prompts {source}: could not load the dataset ({error})") from error
    yield from enumerate(dataset, start=1)


def _prompt_of(value: Any) -> tuple[list[Message], str | None]:
    """The prompt turns of one record and None, or ([], the quarantine reason)."""
    if not isinstance(value, dict):
        return [], "invalid_prompt"
    raw = value.get("messages") if value.get("messages") is not None else value.get("prompt")
    if raw is None or (isinstance(raw, float) and raw != raw):  # absent, or NaN from a table
        return [], "invalid_prompt"
    try:
        messages = prompt_to_messages(raw)
    except TypeError:
        return [], "invalid_prompt"
    while messages and messages[-1]["role"] == "assistant":  # a conversation with its answer
        messages = messages[:-1]
    if not messages or messages[-1]["role"] != "user" or not messages[-1]["content"].strip():
        return [], "empty_prompt"
    return messages, None


def _text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)[:2000]
