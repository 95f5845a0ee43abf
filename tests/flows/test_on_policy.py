"""The on-policy loop: the model's own answers, judged, become the pairs it trains on."""

import pandas as pd
from mlflow import MlflowClient

ON_POLICY = (
    "generate.prompts=synthetic:n=60,seed=3",
    "generate.samples=3",
    "generate.max_new_tokens=24",
    "train.max_steps=20",
)


def test_a_run_with_prompts_trains_on_judged_pairs_of_its_own_answers(run_flow, tiny_reward_model_dir):
    # A reward model with random weights tells the from-scratch model's answers apart (the
    # synthetic rule scores them all alike), which is what the loop's plumbing needs.
    judge = ("generate.judge=reward-model", f"generate.judge_model={tiny_reward_model_dir}")
    first = run_flow(*ON_POLICY, *judge)
    generation = first["generation"]
    assert generation["prompts"] == 60 and generation["pairs"] + sum(generation["dropped"].values()) == 60
    assert generation["generator"]["source"] == "tiny-scratch"  # no champion yet: the starting model
    assert generation["judge"]["name"] == "reward-model" and generation["judge"]["identity"].startswith("folder:")
    pairs = pd.read_json(generation["pairs_path"], lines=True)
    assert len(pairs) == generation["pairs"] and (pairs["chosen_score"] > pairs["rejected_score"]).all()
    assert first["validation"]["total"] == generation["pairs"] and first["skipped"] is False
    client = MlflowClient(tracking_uri=run_flow.tracking_uri)
    inputs = client.get_run(first["mlflow_run_id"]).inputs.dataset_inputs
    assert "generated-pairs" in {item.dataset.name for item in inputs}  # the pairs are the run's data

    again = run_flow(*ON_POLICY, *judge)
    if first["promoted"]:  # the champion answers now: other pairs, another training
        assert again["generation"]["generator"]["source"].startswith("models:/simpo-policy@champion")
        assert again["training_identity"] != first["training_identity"]
    else:  # the same generator, prompts, judge and seeds give the same pairs: nothing to retrain
        assert again["generation"]["generator"]["source"] == "tiny-scratch"
        assert again["skipped"] is True and again["training_identity"] == first["training_identity"]
