"""Mix several validated sources into one training set, deterministically.

Each source is validated and audited on its own; `mix_sources` then picks rows from each
`valid.parquet` by a salted hash of the prompt (the split's BLAKE2b position in [0, 1), under
a salt of its own so the mix and the held-out split stay independent):

- `fraction=f`: the rows whose prompt position is below f (about f of the source).
- `weight=w`: the weighted sources share the rows in proportion to their weights, in the
  largest mix they can fill without repeating a row: the scarcest source (relative to its
  share) gives all its rows and the others the rows of lowest prompt position.

So reruns pick the same rows, shuffled rows change nothing, and appended data keeps the
earlier picks (a fraction keeps every earlier row; a weight keeps them while the totals
grow). A pair already in an earlier source is not taken twice. Rows not picked are valid,
only not sampled: they stay in the source's `valid.parquet` and every count is in the
result (`available = duplicates + used + unused`).
"""

import hashlib
import json
import logging
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import Field, model_validator

from simpo_core.data.frames import canonical_prompt_json
from simpo_core.data.mix_stream import scan_source, write_picks
from simpo_core.data.split import prompt_fraction
from simpo_core.data.validation import QUARANTINE_FILE, VALID_FILE, ValidationResult
from simpo_core.data.validation_stream import PairDigests
from simpo_core.errors import DataError
from simpo_core.settings import StepSettings

logger = logging.getLogger(__name__)

MIX_SALT = "simpo-mix"  # independent of the split salt: a mix must not pick the held-out prompts
SOURCE_COLUMN = "source_name"
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
_PATH_SUFFIXES = (".json", ".jsonl", ".parquet", ".csv")


def default_name(source: str) -> str:
    """A short, file-name-safe name for a source: `data/prefs.jsonl` -> `prefs`,
    `synthetic:n=300,seed=1` -> `synthetic-n-300-seed-1`, `org/set@train` -> `org-set-train`."""
    text = source.strip()
    looks_like_path = text.startswith((".", "/", "~")) or text.lower().endswith(_PATH_SUFFIXES)
    if looks_like_path or Path(text).expanduser().exists():
        path = Path(text.rstrip("/")).expanduser()
        text = path.stem if path.suffix.lower() in _PATH_SUFFIXES else path.name
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-._")[:64]
    return slug or "source"


class SourceSpec(StepSettings):
    """One source of a mix and how much of it to take: exactly one of `weight` or `fraction`."""

    source: str = Field(..., min_length=1, description="file, folder, hub id, or 'synthetic[:n=N,bias=X,seed=S]'")
    name: str | None = Field(
        None,
        pattern=NAME_PATTERN,
        description="name in the lineage, the summary and the run folder (data/sources/NAME); derived from the "
        "source when unset",
    )
    weight: float | None = Field(
        None, gt=0, description="share of the mix relative to the other weighted sources (largest mix, no repeats)"
    )
    fraction: float | None = Field(
        None, gt=0, le=1, description="share of this source's valid rows to keep (chosen by prompt hash)"
    )
    replay: bool = Field(False, description="added by data.replay from the champion's training data")

    @model_validator(mode="before")
    @classmethod
    def name_from_source(cls, values: Any) -> Any:
        if isinstance(values, dict) and not values.get("name") and isinstance(values.get("source"), str):
            return {**values, "name": default_name(values["source"])}
        return values

    @model_validator(mode="after")
    def one_share(self) -> "SourceSpec":
        if (self.weight is None) == (self.fraction is None):
            given = "both" if self.weight is not None else "neither"
            raise ValueError(
                f"source {self.source!r} has {given} of weight and fraction: give exactly one "
                "(weight: share of the mix; fraction: share of this source's rows)"
            )
        return self

    def share(self) -> dict[str, float]:
        """`{"weight": w}` or `{"fraction": f}`."""
        return {"weight": self.weight} if self.weight is not None else {"fraction": float(self.fraction or 0)}


def check_unique_names(specs: list[SourceSpec]) -> None:
    """Raises ValueError naming the sources that share a name."""
    counts = Counter(spec.name for spec in specs)
    repeated = sorted(name for name, count in counts.items() if count > 1 and name)
    if repeated:
        raise ValueError(
            f"several sources are named {', '.join(map(repr, repeated))}: give each a distinct `name` "
            "(names are derived from the source when unset)"
        )


@dataclass
class MixResult:
    """The mixed `valid.parquet` (a `source_name` column says where each row came from) and,
    per source name, `source`, the share, `available`, `duplicates`, `used` and `unused`."""

    valid_path: Path
    rows: int
    sources: dict[str, dict[str, Any]] = field(default_factory=dict)
    salt: str = MIX_SALT

    def report(self) -> dict[str, Any]:
        return {"rows": self.rows, "salt": self.salt, "sources": self.sources}


def prompt_positions(frame: pd.DataFrame, salt: str = MIX_SALT) -> np.ndarray:
    """Float (N,): each row's prompt position in [0, 1) under `salt`."""
    return np.fromiter(
        (prompt_fraction(canonical_prompt_json(p), salt) for p in frame["prompt"]), dtype=np.float64, count=len(frame)
    )


def weighted_counts(available: dict[str, int], weights: dict[str, float]) -> dict[str, int]:
    """Rows per weighted source: the largest total T with `share_i × T <= available_i` for all i.

    >>> weighted_counts({"a": 300, "b": 300}, {"a": 2.0, "b": 1.0})
    {'a': 300, 'b': 150}
    """
    if not weights:
        return {}
    total_weight = sum(weights.values())
    shares = {name: weight / total_weight for name, weight in weights.items()}
    total = min(available[name] / share for name, share in shares.items())
    return {name: min(available[name], int(round(share * total))) for name, share in shares.items()}


def mix_sources(parts: list[tuple[SourceSpec, Path]], out_path: Path, salt: str = MIX_SALT) -> MixResult:
    """Pick rows from each source's valid rows and write them, in source order, to `out_path`.

    Streams: a first pass over each source keeps a pair digest and a prompt position per
    row (24 bytes), the picks are decided on those, and a second pass copies the picked rows
    batch by batch (`simpo_core.data.mix_stream`).

    Args:
        parts: `(spec, valid_path)` per source, names resolved and distinct; earlier sources
            win a pair found in several.
        out_path: the mixed Parquet file (the canonical columns, `source_row`, `source_file`
            and `source_name`).
        salt: the salt of the prompt hash (change it to draw another, equally stable mix).

    Raises:
        DataError: a weighted source has no valid rows (the mix would be empty), or nothing
            was picked at all.
    """
    scans, counts, seen = [], {}, PairDigests()
    for index, (spec, valid_path) in enumerate(parts):
        digests, positions = scan_source(Path(valid_path), lambda frame: prompt_positions(frame, salt))
        fresh = ~seen.contains(digests)  # only earlier sources count: they win a shared pair
        if index < len(parts) - 1:  # no later source looks up the last one's pairs
            seen.add(digests)
        scans.append((spec, fresh, digests, positions))
        counts[spec.name] = {"available": len(digests), "duplicates": int((~fresh).sum())}
    weights = {spec.name: spec.weight for spec, *_ in scans if spec.weight is not None}
    empty = [name for name in weights if counts[name]["available"] - counts[name]["duplicates"] == 0]
    if empty:
        raise DataError(
            f"weighted source(s) {', '.join(empty)} have no valid rows left to mix, so every weighted source "
            "would give none; fix the data, remove the source, or give it a fraction instead of a weight"
        )
    wanted = weighted_counts({n: c["available"] - c["duplicates"] for n, c in counts.items() if n in weights}, weights)
    picks = []
    for (spec, fresh, digests, positions), (_, valid_path) in zip(scans, parts):
        chosen = _choose(spec, fresh, digests, positions, wanted.get(spec.name, 0))
        picks.append((Path(valid_path), chosen, spec.name))
        free = counts[spec.name]["available"] - counts[spec.name]["duplicates"]
        counts[spec.name] = {"source": spec.source, **spec.share(), "replay": spec.replay, **counts[spec.name]}
        counts[spec.name].update(used=len(chosen), unused=free - len(chosen))
    if not sum(len(chosen) for _, chosen, _ in picks):
        raise DataError(f"the mix of {', '.join(counts)} picked no rows; raise the fractions or add data")
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    rows = write_picks(picks, out_path, SOURCE_COLUMN)
    for name, count in counts.items():
        logger.info("mix: %s gives %d of %d valid rows", name, count["used"], count["available"])
    return MixResult(out_path, rows, counts, salt)


def _choose(spec: SourceSpec, fresh: np.ndarray, digests: np.ndarray, positions: np.ndarray, wanted: int) -> np.ndarray:
    """Sorted row numbers to take from one source (`wanted` rows when it is weighted)."""
    candidates = np.flatnonzero(fresh)
    if spec.fraction is not None:
        return candidates[positions[candidates] < spec.fraction]
    # Lowest prompt position first, ties by the pair's digest: the same rows in any row order.
    order = np.lexsort((digests[candidates], positions[candidates]))
    return np.sort(candidates[order[:wanted]])


def mix_fingerprint(parts: list[tuple[SourceSpec, str]], salt: str = MIX_SALT) -> str:
    """SHA-256 over each source's spec and data fingerprint: any change to either changes it."""
    described = [{"spec": spec.model_dump(mode="json"), "fingerprint": fingerprint} for spec, fingerprint in parts]
    return hashlib.sha256(json.dumps({"salt": salt, "sources": described}, sort_keys=True).encode()).hexdigest()


def mix_validated(
    parts: list[tuple[SourceSpec, ValidationResult]], out_dir: Path, salt: str = MIX_SALT
) -> tuple[ValidationResult, MixResult]:
    """The mix step on validated (and audited) sources: write the mixed `valid.parquet` and one
    `quarantine.jsonl` holding every source's quarantined rows (each line gains `source_name`)
    under `out_dir`.

    Returns:
        `(validated, mix)`: `validated` reads like one source's validation (`total ==
        valid + quarantined` summed over the sources, `reasons` merged, `sources` per name,
        `mix` with the rows used per source), `valid_path` is the mixed file and
        `fingerprint` is `mix_fingerprint`.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    mix = mix_sources([(spec, result.valid_path) for spec, result in parts], out_dir / VALID_FILE, salt)
    quarantine_path = out_dir / QUARANTINE_FILE
    with quarantine_path.open("w", encoding="utf-8") as handle:
        for spec, result in parts:
            for line in Path(result.quarantine_path).read_text(encoding="utf-8").splitlines():
                if line.strip():
                    handle.write(json.dumps({"source_name": spec.name, **json.loads(line)}, ensure_ascii=False) + "\n")
    reasons: Counter = Counter()
    for _, result in parts:
        reasons.update(result.summary["reasons"])
    summary = {
        "total": sum(result.summary["total"] for _, result in parts),
        "valid": sum(result.summary["valid"] for _, result in parts),
        "quarantined": sum(result.summary["quarantined"] for _, result in parts),
        "reasons": dict(reasons.most_common()),
        "quarantine_path": str(quarantine_path),
        "valid_path": str(mix.valid_path),
        "sources": {spec.name: result.report() for spec, result in parts},
        "mix": mix.report(),
    }
    formats = sorted({result.format for _, result in parts})
    validated = ValidationResult(
        None,
        summary,
        mix.valid_path,
        quarantine_path,
        " + ".join(f"{spec.name}={spec.source}" for spec, _ in parts),
        formats[0] if len(formats) == 1 else "mixed",
        mix_fingerprint([(spec, result.fingerprint) for spec, result in parts], salt),
    )
    return validated, mix


def combine_audits(mixed: dict[str, Any], per_source: dict[str, dict[str, Any]], policy: str) -> dict[str, Any]:
    """The audit report of a mix: the length figures of the mixed rows (`mixed`, measured with
    policy `warn`), the policy that ran on each source, `removed` summed over the sources
    (their rebalancing dropped those rows before the mix) and each source's own report."""
    return {
        **mixed,
        "policy": policy,
        "removed": sum(int(report.get("removed", 0)) for report in per_source.values()),
        "sources": {name: {k: v for k, v in report.items() if k != "buckets"} for name, report in per_source.items()},
    }
