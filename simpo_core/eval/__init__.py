"""Held-out evaluation of a trained model against its starting model.

- `settings`: `EvalSettings`, the one home of every evaluation default.
- `metrics`: reward accuracy, length-controlled accuracy, margins, bootstrap intervals.
- `generation`: answers to sampled prompts and the collapse checks.
- `judges`: the synthetic judge and a reward-model judge.
- `head_to_head`: the judged head-to-head of two models' answers for the champion gate (win
  rate, length-controlled win rate, sign test).
- `scoring`: one model's log-probs and preference block; length figures on the whole answers.
- `heldout`: `evaluate_heldout` / `evaluate_model`, the evaluation step.
- `report`: the Markdown, JSON and PNG reports.
- `saved`: `evaluate_saved`, the evaluation of saved model folders (what the CLI and the task call).
"""
