"""Hyper-parameter sweeps: which trials run, and which trial wins.

A sweep is one or more stages. A stage is a grid (every combination of its values) or an
explicit list of trials; each stage starts from the best settings found so far, so
`stages: [{lr: [...]}, {gamma_beta_ratio: [...]}, {beta: [...]}]` tunes the learning rate
first, then γ/β at the best learning rate, then β. With no grid, list or stages given, the
SimPO authors' protocol runs (`authors_protocol`).

The winner is the eligible trial with the best held-out `metric` (length-controlled accuracy
by default); a trial is eligible when it finished, its reward accuracy reaches
`min_reward_accuracy` and its generations did not collapse. Pure logic: the flow runs it.

- `settings`: `SweepSettings`, what a sweep tries, where its trials run, how the winner is picked.
- `plan`: the stages and their trials (`planned_stages`, `stage_trials`, `authors_protocol`).
- `selection`: the winner, the per-trial summary, the results table and its plot.
- `placement`: which GPUs each concurrent trial uses (`trial_placement`, the Dask GPU workers).
"""
