"""Prefect flows and the `simpo` command line (the top of the import graph): composition only.

- `retrain`: the `simpo-retrain` flow, one straight line from data to the gate.
- `sweep`: the `simpo-sweep` flow: one data preparation, many trials, the winner gated.
- `tracked_run`: one flow run, one MLflow run (what both flows do around their steps).
- `data_steps`: check, validate, audit, mix and split (a single source is a mix of one).
- `model_steps`: train, evaluate, register and gate; regate or skip a training decided before.
- `params`: the flow's parameters (`RetrainParams`), composed of the steps' settings models.
- `config_reference`: the configuration reference generated from those models (docs/config.md).
- `serving`: the flow that stages the champion for serving when the alias moves.
- `alerts`, `automations`: failure alerts and the Prefect automations of a deployment.
- `cli`: the `simpo` console script; `commands`: one module per command.
"""
