"""Several weighted sources through the whole flow, and replay of the champion's data."""

import json
from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient

from simpo_core.data.loading import load_preferences
from simpo_core.data.synthetic import generate_pairs, write_jsonl
from simpo_core.errors import DataError

SOURCES = (
    "data.sources=[{source: 'synthetic:n=300,bias=0.0,seed=1', name: first, weight: 2},"
    " {source: 'synthetic:n=300,bias=0.0,seed=2', name: second, weight: 1}]"
)


def fingerprint(source: str) -> str:
    return load_preferences(source).fingerprint


def test_two_weighted_sources_train_and_both_are_in_the_lineage(run_flow):
    # data.source back to its default: the sources list replaces it
    summary = run_flow("data.source=synthetic", SOURCES, "train.max_steps=20", "eval.generation_samples=0")
    assert summary["skipped"] is False and summary["train_steps"] == 20

    mix = summary["validation"]["mix"]["sources"]
    # weights 2 : 1 over 300 valid pairs each: "first" is the scarce one at its share, so it gives
    # all 300 and "second" half as many.
    assert (mix["first"]["available"], mix["first"]["used"]) == (300, 300)
    assert (mix["second"]["available"], mix["second"]["used"], mix["second"]["unused"]) == (300, 150, 150)
    mixed = pd.read_parquet(Path(summary["run_dir"]) / "data" / "valid.parquet")
    assert mixed["source_name"].value_counts().to_dict() == {"first": 300, "second": 150}
    assert summary["validation"]["total"] == 600 and summary["validation"]["quarantined"] == 0
    assert set(summary["audit"]["sources"]) == {"first", "second"} and summary["audit"]["pairs"] == 450

    client = MlflowClient(tracking_uri=run_flow.tracking_uri, registry_uri=run_flow.tracking_uri)
    run = client.get_run(summary["mlflow_run_id"])
    datasets = {item.dataset.name: item.dataset.digest for item in run.inputs.dataset_inputs}
    assert datasets == {
        "first": fingerprint("synthetic:n=300,bias=0.0,seed=1")[:36],
        "second": fingerprint("synthetic:n=300,bias=0.0,seed=2")[:36],
    }
    assert run.data.metrics["data/first/used"] == 300 and run.data.metrics["data/second/used"] == 150
    recorded = json.loads(run.data.tags["data.sources"])
    assert [(entry["name"], entry["weight"]) for entry in recorded] == [("first", 2.0), ("second", 1.0)]
    assert len(run.data.tags["data.fingerprint"]) == 64


def test_replay_mixes_in_the_rows_the_champion_trained_on_not_its_source_today(run_flow, tmp_path):
    export = tmp_path / "export.jsonl"
    write_jsonl(generate_pairs(400, seed=1), export)
    first = run_flow(f"data.source={export}")  # trained enough to become the champion
    assert first["promoted"] is True, first["promotion_reason"]
    trained_on = pd.read_parquet(Path(first["run_dir"]) / "data" / "valid.parquet")
    write_jsonl(generate_pairs(50, seed=9), export)  # the export is rewritten since

    replay = ("data.source=synthetic:n=300,bias=0.0,seed=2", "data.replay=0.5", "train.max_steps=0")
    second = run_flow(*replay, "eval.generation_samples=0")
    mix = second["validation"]["mix"]["sources"]
    replayed = mix["replay-v1"]
    assert replayed["replay"] is True and replayed["fraction"] == 0.5 and replayed["available"] == len(trained_on)
    assert 150 < replayed["used"] < 250 and replayed["used"] + replayed["unused"] == 400
    assert mix["synthetic-n-300-bias-0.0-seed-2"]["used"] == 300
    mixed = pd.read_parquet(Path(second["run_dir"]) / "data" / "valid.parquet")
    assert set(mixed.loc[mixed["source_name"] == "replay-v1", "chosen"]) <= set(trained_on["chosen"])

    client = MlflowClient(tracking_uri=run_flow.tracking_uri, registry_uri=run_flow.tracking_uri)
    names = {item.dataset.name for item in client.get_run(second["mlflow_run_id"]).inputs.dataset_inputs}
    assert names == {"synthetic-n-300-bias-0.0-seed-2", "replay-v1"}

    record = next((tmp_path / "runs" / "replay").glob("*/rows.parquet"))
    record.write_bytes(record.read_bytes().replace(b"Oslo", b"Rome", 1))  # damaged: refused, not replayed
    with pytest.raises(DataError, match="does not match its digest"):
        run_flow(*replay, "data.source=synthetic:n=300,bias=0.0,seed=3")
    record.unlink()
    client.delete_tag(first["mlflow_run_id"], "training.rows_sha256")
    with pytest.raises(DataError, match="has no record of the rows it trained on"):
        run_flow(*replay, "data.source=synthetic:n=300,bias=0.0,seed=3")
