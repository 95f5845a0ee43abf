"""Thin, retryable Prefect tasks that call simpo_core and log to MLflow."""
