"""Thin, retryable Prefect tasks that call simpo_core and log to MLflow.

- `data`: load, validate, audit (one source or each source of a mix), mix, split.
- `generation`: on-policy pairs from the champion's answers (`generate-pairs`).
- `identity`: the training identity and what a rerun does with it (skip, regate, train).
- `train`: SimPO training that a retry or a later run resumes (`train-simpo`).
- `evaluate`: starting model vs trained model on the held-out pairs.
- `registry`, `promotion`, `regate`: register a version, let the gate decide, reuse a recorded result.
- `replay`: record the rows a training used; replay the champion's record.
- `mlflow_run`: open and close the MLflow run of a flow run.
- `sweep`: the sweep's child runs and results.
- `staging`: stage the champion for serving.
- `helpers`: what the tasks share that is not a task (tracking, champion, serving model, retry).
"""
