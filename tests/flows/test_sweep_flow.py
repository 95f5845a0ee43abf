"""The simpo-sweep flow: four trials on a Dask cluster, then the same sweep again from the CLI."""

import json
import shutil

from mlflow import MlflowClient

GRID = "sweep.grid={lr: [0.001, 0.0003], beta: [2, 10]}"


def test_sweep_registers_only_the_best_trial_and_a_rerun_reuses_every_training(
    prefect_harness, tmp_path, monkeypatch, tiny_model_dir, capsys
):
    from distributed import LocalCluster

    from flows.cli import build_parser
    from flows.commands.sweep import load_sweep_params
    from flows.sweep import simpo_sweep

    monkeypatch.chdir(tmp_path)
    shutil.copytree(tiny_model_dir, tmp_path / ".simpo" / "models" / "tiny")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    common = [
        "data.source=synthetic:n=400,bias=0.0,seed=1",
        "model.source=tiny-scratch",  # as the other flow tests: learns in a few steps, no SFT build
        "train.max_steps=30",
        "train.save_steps=1000",
        "eval.generation_samples=2",
        "eval.max_new_tokens=8",
        "registry.min_generation_samples=2",
        f"output_dir={tmp_path / 'runs'}",
        f"registry.tracking_uri={uri}",
        GRID,
    ]
    # A real Dask scheduler with two one-thread workers, in this process (cheap to start).
    cluster_options = {"n_workers": 2, "threads_per_worker": 1, "dashboard_address": None}
    with LocalCluster(processes=False, local_directory=tmp_path / "dask", **cluster_options) as cluster:
        dask = ["sweep.runner=dask", f"sweep.dask_address={cluster.scheduler_address}", "sweep.max_concurrency=2"]
        summary = simpo_sweep(*load_sweep_params(None, common + dask))

    trials = summary["trials"]
    assert [trial["settings"] for trial in trials] == [
        {"lr": 0.001, "beta": 2.0},
        {"lr": 0.001, "beta": 10.0},
        {"lr": 0.0003, "beta": 2.0},
        {"lr": 0.0003, "beta": 10.0},
    ]
    # Every trial trained its own model, in the folder its training identity names.
    assert len({trial["training_identity"] for trial in trials}) == 4
    for trial in trials:
        assert f"trainings/{trial['training_identity'][:16]}/" in trial["model_dir"]
        assert trial["train_steps"] == 30 and trial["reused_training"] is False
    # The winner is the eligible trial the measured metrics rank first.
    eligible = [trial for trial in trials if trial["eligible"]]
    best = max(eligible, key=lambda t: (t["metrics"]["length_controlled_accuracy"], t["metrics"]["reward_accuracy"]))
    assert summary["winner"]["name"] == best["name"], summary["winner_reason"]

    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    parent = client.get_run(summary["mlflow_run_id"])
    children = client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'"
    )
    assert sorted(run.info.run_id for run in children) == sorted(trial["mlflow_run_id"] for trial in trials)
    for run in children:
        trial = next(t for t in trials if t["mlflow_run_id"] == run.info.run_id)
        assert run.data.params["trial.beta"] == str(trial["settings"]["beta"])
        logged = run.data.metrics["eval/trained/length_controlled_accuracy"]
        assert logged == trial["metrics"]["length_controlled_accuracy"]
        verdict = "eligible, not the best" if trial["eligible"] else trial["disqualified"]
        assert run.data.tags["sweep.verdict"] == ("winner" if trial is best else verdict)
    assert {item.path for item in client.list_artifacts(parent.info.run_id, "sweep")} == {
        "sweep/sweep_results.csv",
        "sweep/sweep_metrics.png",
    }
    versions = client.search_model_versions("name = 'simpo-policy'")
    assert [(str(v.version), v.run_id) for v in versions] == [(summary["model_version"], best["mlflow_run_id"])]
    assert summary["registry"]["registered"] is True and summary["model_version"] == "1"

    # The same sweep from the CLI on the local runner: trainings reused, nothing registered twice.
    capsys.readouterr()
    overrides = [arg for item in common for arg in ("--set", item)]
    args = build_parser().parse_args(["sweep", *overrides, "--max-concurrency", "2", "--json"])
    assert args.handler(args) == 0
    rerun = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [trial["reused_training"] for trial in rerun["trials"]] == [True] * 4
    assert rerun["winner"]["name"] == best["name"]
    assert rerun["registry"] == {
        "registered_model_name": "simpo-policy",
        "model_version": "1",
        "registered": False,
        "promoted": False,
        "promotion_reason": rerun["promotion_reason"],
        "champion_version": "1" if summary["promoted"] else None,  # the gate decided on the first sweep
    }
    assert rerun["promotion_reason"].startswith("unchanged: simpo-policy v1 was trained from the same data")
    assert len(client.search_model_versions("name = 'simpo-policy'")) == 1
