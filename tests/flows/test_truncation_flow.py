"""The flow audits with the training limits and records the truncation count."""

from mlflow import MlflowClient


def test_the_run_summary_and_metrics_count_the_pairs_training_cuts(run_flow):
    summary = run_flow(
        "train.max_steps=4", "train.max_length=96", "train.max_prompt_length=48", "eval.generation_samples=0"
    )
    truncated = summary["audit"]["truncated"]
    assert (truncated["max_length"], truncated["max_prompt_length"]) == (96, 48)  # train's limits
    assert truncated["pairs"] > 0 and truncated["fraction"] == summary["audit"]["truncated_fraction"]
    run = MlflowClient(tracking_uri=run_flow.tracking_uri).get_run(summary["mlflow_run_id"])
    assert run.data.metrics["audit/truncated_fraction"] == truncated["fraction"]
    assert run.data.metrics["audit/truncated_pairs"] == truncated["pairs"]
    heldout = summary["heldout"]["trained"]
    assert heldout["length_sides_measured"] == "before truncation" and heldout["truncated_pairs"] > 0
    assert heldout["length_controlled_pairs"] == heldout["pairs_chosen_longer"] + heldout["pairs_chosen_shorter"]
