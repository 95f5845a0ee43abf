"""The judged head-to-head in the flow: a challenger whose answers are no better is refused by
`registry.gate_on=judge`, with the judge's numbers in the reason and in the summary."""


def test_an_untrained_challenger_ties_on_answers_and_is_refused_by_gate_on_judge(run_flow, tiny_reward_model_dir):
    # No training step: the challenger is the starting model, the reference of a first run, so both
    # answer every prompt alike (greedy, same prompts) and every judged prompt is a tie.
    summary = run_flow(
        "train.max_steps=0",
        "eval.generation_samples=3",
        "eval.judge=reward-model",
        f"eval.reward_model_path={tiny_reward_model_dir}",
        "registry.gate_on=judge",
    )
    answers = summary["heldout"]["judge_vs_champion"]
    assert answers["reference"] == "the starting model (no champion yet)" and answers["judge"] == "reward-model"
    assert (answers["judged"], answers["wins"], answers["losses"], answers["ties"]) == (3, 0, 0, 3)
    assert answers["win_rate"] == 0.5 and answers["lc_win_rate"] == 0.5 and answers["p_value"] == 1.0
    assert len(answers["samples"]) == 3
    assert all(sample["challenger"] == sample["reference"] for sample in answers["samples"])

    assert summary["promoted"] is False
    reason = summary["promotion_reason"]
    assert (
        "answers not significantly better than those of the starting model (no champion yet) (sign test p=1" in reason
    )
    assert "0 wins, 0 losses, 3 ties of 3 judged, win rate 0.500, LC win rate 0.500" in reason
    assert "accuracy gain over" not in reason  # gate_on judge: the accuracy rule does not decide
