"""Mixing several validated sources by prompt hash (`simpo_core.data.mix`)."""

import json

import pandas as pd
import pytest

from flows.params import load_params
from simpo_core.data import mix_stream
from simpo_core.data.frames import canonical_prompt_json
from simpo_core.data.mix import (
    SOURCE_COLUMN,
    SourceSpec,
    default_name,
    mix_fingerprint,
    mix_sources,
    mix_validated,
    prompt_positions,
    weighted_counts,
)
from simpo_core.data.validation import ValidationResult
from simpo_core.data.validation_stream import pair_digests
from simpo_core.errors import ConfigError, DataError


def pairs(tag: str, n: int) -> pd.DataFrame:
    """`n` canonical rows with distinct prompts `tag-i`."""
    return pd.DataFrame(
        {
            "prompt": [[{"role": "user", "content": f"{tag}-{i}"}] for i in range(n)],
            "chosen": [f"good {tag} {i}" for i in range(n)],
            "rejected": [f"bad {tag} {i}" for i in range(n)],
            "source_row": list(range(1, n + 1)),
            "source_file": [f"{tag}.jsonl"] * n,
        }
    )


def write(frame: pd.DataFrame, path):
    frame.to_parquet(path, index=False)
    return path


def picked(path, name: str) -> set[str]:
    mixed = pd.read_parquet(path)
    return {p[0]["content"] for p in mixed.loc[mixed[SOURCE_COLUMN] == name, "prompt"]}


def test_weights_fill_the_largest_mix_the_scarcest_source_allows():
    """a: 300 rows at weight 2, b: 300 at weight 1 -> b limits nothing, a does: T = 300 / (2/3) = 450,
    so a gives 300 (all) and b gives 150. With b scarce (90 rows): T = 90 / (1/3) = 270, a 180, b 90."""
    assert weighted_counts({"a": 300, "b": 300}, {"a": 2.0, "b": 1.0}) == {"a": 300, "b": 150}
    assert weighted_counts({"a": 300, "b": 90}, {"a": 2.0, "b": 1.0}) == {"a": 180, "b": 90}
    assert weighted_counts({"a": 7}, {"a": 0.5}) == {"a": 7}


def test_mix_by_weight_and_fraction_counts_every_row(tmp_path):
    a, b = write(pairs("a", 300), tmp_path / "a.parquet"), write(pairs("b", 300), tmp_path / "b.parquet")
    c = write(pairs("c", 1000), tmp_path / "c.parquet")
    specs = [
        SourceSpec(source="a", weight=2),
        SourceSpec(source="b", weight=1),
        SourceSpec(source="c", fraction=0.25),
    ]
    result = mix_sources(list(zip(specs, [a, b, c])), tmp_path / "mix" / "valid.parquet")
    counts = {name: (s["available"], s["used"], s["unused"]) for name, s in result.sources.items()}
    assert counts["a"] == (300, 300, 0) and counts["b"] == (300, 150, 150)
    assert 200 < counts["c"][1] < 300 and counts["c"][1] + counts["c"][2] == 1000  # about a quarter, hash-picked
    mixed = pd.read_parquet(result.valid_path)
    assert len(mixed) == result.rows == 300 + 150 + counts["c"][1]
    assert list(mixed[SOURCE_COLUMN].unique()) == ["a", "b", "c"]
    # the fraction keeps exactly the rows whose prompt position is below it
    positions = prompt_positions(pairs("c", 1000))
    assert picked(result.valid_path, "c") == {f"c-{i}" for i in range(1000) if positions[i] < 0.25}


def test_the_mix_does_not_depend_on_row_order_and_keeps_picks_when_data_is_appended(tmp_path):
    b = write(pairs("b", 100), tmp_path / "b.parquet")
    specs = [SourceSpec(source="a", weight=1), SourceSpec(source="b", weight=1)]
    first = mix_sources(list(zip(specs, [write(pairs("a", 400), tmp_path / "a.parquet"), b])), tmp_path / "1.parquet")
    shuffled = write(pairs("a", 400).sample(frac=1, random_state=7), tmp_path / "a-shuffled.parquet")
    second = mix_sources(list(zip(specs, [shuffled, b])), tmp_path / "2.parquet")
    assert first.sources["a"]["used"] == 100 and picked(first.valid_path, "a") == picked(second.valid_path, "a")

    fraction = [SourceSpec(source="a", fraction=0.3)]
    small = mix_sources(list(zip(fraction, [write(pairs("a", 400), tmp_path / "a4.parquet")])), tmp_path / "3.parquet")
    grown = mix_sources(list(zip(fraction, [write(pairs("a", 800), tmp_path / "a8.parquet")])), tmp_path / "4.parquet")
    assert picked(small.valid_path, "a") <= picked(grown.valid_path, "a")


def test_a_pair_in_two_sources_is_taken_once(tmp_path):
    a = write(pairs("a", 50), tmp_path / "a.parquet")
    both = write(pd.concat([pairs("a", 10), pairs("b", 40)], ignore_index=True), tmp_path / "b.parquet")
    specs = [SourceSpec(source="a", fraction=1.0), SourceSpec(source="b", fraction=1.0)]
    result = mix_sources(list(zip(specs, [a, both])), tmp_path / "mix.parquet")
    assert result.sources["b"] == {
        "source": "b",
        "fraction": 1.0,
        "replay": False,
        "available": 50,
        "duplicates": 10,
        "used": 40,
        "unused": 0,
    }
    assert result.rows == 90


def test_a_weighted_source_without_rows_is_an_error_that_names_it(tmp_path):
    a = write(pairs("a", 50), tmp_path / "a.parquet")
    empty = write(pairs("e", 0), tmp_path / "e.parquet")
    specs = [SourceSpec(source="a", weight=1), SourceSpec(source="e", name="empty", weight=1)]
    with pytest.raises(DataError, match="empty have no valid rows"):
        mix_sources(list(zip(specs, [a, empty])), tmp_path / "mix.parquet")


def test_a_spec_takes_exactly_one_share_and_a_name_from_its_source():
    with pytest.raises(ValueError, match="both of weight and fraction"):
        SourceSpec(source="a", weight=1, fraction=0.5)
    with pytest.raises(ValueError, match="neither of weight and fraction"):
        SourceSpec(source="a")
    with pytest.raises(ValueError, match="fraction"):
        SourceSpec(source="a", fraction=1.5)
    assert SourceSpec(source="data/prefs.jsonl", weight=1).name == "prefs"
    assert default_name("synthetic:n=300,seed=1") == "synthetic-n-300-seed-1"
    assert default_name("org/set@train") == "org-set-train"


def test_params_refuse_both_source_and_sources_and_repeated_names():
    sources = (
        "data.sources=[{source: 'synthetic:n=300,seed=1', weight: 2}, {source: 'synthetic:n=300,seed=2', weight: 1}]"
    )
    params = load_params(None, [sources])
    assert [s.name for s in params.data.sources] == ["synthetic-n-300-seed-1", "synthetic-n-300-seed-2"]
    with pytest.raises(ConfigError, match="data.source .* and data.sources are both set: drop data.source"):
        load_params(None, ["data.source=prefs.jsonl", sources])
    with pytest.raises(ConfigError, match="several sources are named 'x'"):
        load_params(
            None, ["data.sources=[{source: a.jsonl, name: x, weight: 1}, {source: b.jsonl, name: x, weight: 1}]"]
        )
    with pytest.raises(ConfigError, match="data.replay"):
        load_params(None, ["data.replay=1"])


def test_the_fingerprint_changes_with_any_source_or_spec():
    a, b = SourceSpec(source="a", weight=2), SourceSpec(source="b", weight=1)
    base = mix_fingerprint([(a, "fa"), (b, "fb")])
    assert base == mix_fingerprint([(a, "fa"), (b, "fb")])
    assert base != mix_fingerprint([(a, "fa"), (b, "fb2")])
    assert base != mix_fingerprint([(a, "fa"), (b.model_copy(update={"weight": 3.0}), "fb")])
    assert base != mix_fingerprint([(a, "fa")])


def test_mix_validated_adds_up_the_sources_and_merges_their_quarantines(tmp_path):
    parts = []
    for tag, bad in (("a", 2), ("b", 1)):
        folder = tmp_path / tag
        folder.mkdir()
        valid = write(pairs(tag, 20), folder / "valid.parquet")
        quarantine = folder / "quarantine.jsonl"
        quarantine.write_text(
            "".join(json.dumps({"reasons": ["invalid_json"], "record": "{"}) + "\n" for _ in range(bad))
        )
        summary = {"total": 20 + bad, "valid": 20, "quarantined": bad, "reasons": {"invalid_json": bad}}
        result = ValidationResult(None, summary, valid, quarantine, tag, "flat", f"fp-{tag}")
        parts.append((SourceSpec(source=tag, weight=1), result))
    validated, mix = mix_validated(parts, tmp_path / "out")
    summary = validated.summary
    assert (summary["total"], summary["valid"], summary["quarantined"]) == (43, 40, 3)
    assert summary["reasons"] == {"invalid_json": 3} and summary["mix"]["rows"] == mix.rows == 40
    lines = [json.loads(line) for line in validated.quarantine_path.read_text().splitlines()]
    assert [line["source_name"] for line in lines] == ["a", "a", "b"]
    assert validated.format == "flat" and validated.fingerprint == mix_fingerprint(
        [(s, r.fingerprint) for s, r in parts]
    )


def simple_mix(sources: list[tuple[pd.DataFrame, SourceSpec]]) -> pd.DataFrame:
    """The mix computed the simple way on whole frames: the reference for the streamed one."""
    seen, kept, free = set(), [], {}
    for frame, spec in sources:
        digests = pair_digests(frame)
        fresh = [d not in seen for d in digests.tolist()]
        seen.update(digests.tolist())
        kept.append((frame, spec, fresh, digests, prompt_positions(frame)))
        free[spec.name] = sum(fresh)
    weights = {spec.name: spec.weight for _, spec in sources if spec.weight is not None}
    wanted = weighted_counts({name: count for name, count in free.items() if name in weights}, weights)
    picks = []
    for frame, spec, fresh, digests, positions in kept:
        rows = [i for i in range(len(frame)) if fresh[i]]
        if spec.fraction is not None:
            rows = [i for i in rows if positions[i] < spec.fraction]
        else:
            rows = sorted(sorted(rows, key=lambda i: (positions[i], digests[i]))[: wanted[spec.name]])
        picks.append(
            frame.iloc[rows].assign(source_file=lambda f: f["source_file"].astype("str"), source_name=spec.name)
        )
    return pd.concat(picks, ignore_index=True)


def test_the_streamed_mix_never_reads_a_source_whole_and_equals_the_simple_mix(tmp_path, monkeypatch):
    """Three sources read 7 rows at a time (so batches split every source): a at fraction 0.5,
    b and c at weight 1, b repeating 30 of a's pairs and c shuffled. With `pandas.read_parquet`
    made to fail, the mix still runs, and its rows equal the simple mix's, in the same order."""
    frames = {
        "a": pairs("a", 100),
        "b": pd.concat([pairs("a", 30), pairs("b", 60)], ignore_index=True),
        "c": pairs("c", 80).sample(frac=1, random_state=3).reset_index(drop=True),
    }
    specs = [SourceSpec(source="a", fraction=0.5), SourceSpec(source="b", weight=1), SourceSpec(source="c", weight=1)]
    paths = [write(frames[spec.name], tmp_path / f"{spec.name}.parquet") for spec in specs]
    expected = simple_mix([(pd.read_parquet(path), spec) for path, spec in zip(paths, specs)])

    def whole_file(*args, **kwargs):
        raise AssertionError("the mix read a whole source")

    with monkeypatch.context() as patched:
        patched.setattr(pd, "read_parquet", whole_file)
        patched.setattr(mix_stream, "BATCH_ROWS", 7)
        result = mix_sources(list(zip(specs, paths)), tmp_path / "mix.parquet")
    mixed = pd.read_parquet(result.valid_path)
    assert [canonical_prompt_json(p) for p in mixed.pop("prompt")] == [
        canonical_prompt_json(p) for p in expected.pop("prompt")
    ]
    pd.testing.assert_frame_equal(mixed, expected)
    assert (result.rows, result.sources["b"]["duplicates"], result.sources["c"]["used"]) == (len(expected), 30, 60)


def test_sources_with_different_message_fields_mix_into_one_schema(tmp_path):
    """a's messages have no `name`, b's do (and b's source_file is a plain string, a's a
    dictionary): the mix has `name` on every message, null on a's rows, and a string
    `source_file`."""
    a = pairs("a", 3)
    a["source_file"] = a["source_file"].astype("category")
    b = pairs("b", 2)
    b["prompt"] = [[{"role": "user", "content": f"b-{i}", "name": "bob"}] for i in range(2)]
    specs = [SourceSpec(source="a", fraction=1.0), SourceSpec(source="b", fraction=1.0)]
    paths = [write(a, tmp_path / "a.parquet"), write(b, tmp_path / "b.parquet")]
    mixed = pd.read_parquet(mix_sources(list(zip(specs, paths)), tmp_path / "mix.parquet").valid_path)
    names = [message["name"] for prompt in mixed["prompt"] for message in prompt]
    assert names == [None, None, None, "bob", "bob"]
    assert list(mixed["source_file"]) == ["a.jsonl"] * 3 + ["b.jsonl"] * 2
