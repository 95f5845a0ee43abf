"""`PreferenceDataset(path)`: canonical pairs from any supported source, as a sequence.

Kept compatible with the seed API (`len`, indexing, `stats()`), on top of the loader: the
path may be anything `load_preferences` reads (JSONL, JSON, Parquet such as `valid.parquet`,
CSV, a folder, a hub id or `synthetic`), in any supported layout.
"""

from pathlib import Path
from typing import Any

from simpo_core.data.loading import load_preferences
from simpo_core.data.schema import CanonicalPair
from simpo_core.data.validation import collect_reasons
from simpo_core.errors import DataError


class PreferenceDataset:
    """Canonical pairs `{"prompt": [messages], "chosen": str, "rejected": str}`.

    Raises:
        DataError: a record cannot be read as a pair; the message names its row and points
            to `simpo validate`, which quarantines such rows instead.
    """

    def __init__(self, path: str | Path, format: str | None = None) -> None:
        loaded = load_preferences(str(path), format=format)
        frame = loaded.rows.reset_index(drop=True)
        # Duplicates are harmless here; anything else would break training or stats().
        unusable = {
            position: found
            for position, found in collect_reasons(frame).items()
            if any(code != "duplicate_pair" for code, _ in found)
        }
        if unusable:
            position = min(unusable)
            first = frame.iloc[position]
            raise DataError(
                f"{len(unusable)} record(s) of {path} are not usable pairs; first: {first['source_file']} "
                f"row {first['source_row']}: {'; '.join(d for _, d in unusable[position])}. Run "
                f"`simpo validate {path}` to quarantine them and use its valid.parquet."
            )
        self.source = loaded.source
        self.fingerprint = loaded.fingerprint
        self._prompts = frame["prompt"].tolist()
        self._chosen = frame["chosen"].tolist()
        self._rejected = frame["rejected"].tolist()

    def __len__(self) -> int:
        return len(self._chosen)

    def __getitem__(self, index: int) -> CanonicalPair:
        prompt = self._prompts[index]
        return {
            "prompt": [dict(m) for m in (prompt.tolist() if hasattr(prompt, "tolist") else prompt)],
            "chosen": self._chosen[index],
            "rejected": self._rejected[index],
        }

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def stats(self) -> dict[str, Any]:
        """`count` and the average `chosen`/`rejected` lengths in characters (0.0 when empty)."""
        count = len(self)
        return {
            "count": count,
            "avg_chosen_length": sum(map(len, self._chosen)) / count if count else 0.0,
            "avg_rejected_length": sum(map(len, self._rejected)) / count if count else 0.0,
        }
