"""Several weighted sources through the whole flow, and replay of the champion's data."""

import json
from pathlib import Path

import pandas as pd
from mlflow import MlflowClient

from simpo_core.data.loading import load_preferences

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


def test_replay_mixes_in_a_share_of_the_champions_source(run_flow):
    first = run_flow()  # synthetic:n=400,bias=0.0,seed=1, trained enough to become the champion
    assert first["promoted"] is True, first["promotion_reason"]

    second = run_flow(
        "data.source=synthetic:n=300,bias=0.0,seed=2",
        "data.replay=0.5",
        "train.max_steps=0",
        "eval.generation_samples=0",
    )
    mix = second["validation"]["mix"]["sources"]
    replayed = mix["replay-synthetic-n-400-bias-0.0-seed-1"]
    assert replayed["replay"] is True and replayed["fraction"] == 0.5
    assert 150 < replayed["used"] < 250 and replayed["used"] + replayed["unused"] == 400
    assert mix["synthetic-n-300-bias-0.0-seed-2"]["used"] == 300

    client = MlflowClient(tracking_uri=run_flow.tracking_uri, registry_uri=run_flow.tracking_uri)
    names = {item.dataset.name for item in client.get_run(second["mlflow_run_id"]).inputs.dataset_inputs}
    assert names == {"synthetic-n-300-bias-0.0-seed-2", "replay-synthetic-n-400-bias-0.0-seed-1"}
