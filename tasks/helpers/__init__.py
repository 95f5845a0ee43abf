"""What the tasks share that is not a task: MLflow and registry helpers, the retry policy.

- `tracking`: the tracking URI, the MLflow client, metrics and secret redaction.
- `champion`: who holds the `champion` alias, moving it (recorded, announced) and rolling back.
- `serving_model`: the pyfunc model the registry serves (logged as code with each version).
- `retry`: the retry policies of the tasks and the tracking-server error they retry.
"""
