"""MLflow plumbing shared by the tasks: tracking URI, experiment, run, redaction.

Every call names the run explicitly (`MlflowClient` with a run id), so tasks never depend
on a global active run and a retried task logs into the same run.
"""

import json
import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from simpo_core.env import state_dir

_URI_PASSWORD = re.compile(r"(?P<scheme>[a-zA-Z][\w+.-]*://)(?P<user>[^:/@\s]+):(?P<password>[^@/\s]+)@")
_TOKENS = re.compile(r"\b(hf_[A-Za-z0-9]{10,}|sk-[A-Za-z0-9_-]{10,}|ghp_[A-Za-z0-9]{10,})\b")
SECRET_KEYS = ("password", "token", "secret", "api_key", "apikey", "credential")


@dataclass(frozen=True)
class Tracking:
    """Where a flow run logs: the MLflow tracking URI and the id of its run.

    One value handed from step to step (instead of two strings), so a function that logs
    cannot be given the URI of one store and the run of another.
    """

    uri: str
    run_id: str

    def client(self):
        """An `MlflowClient` on this store (tracking and registry)."""
        return get_client(self.uri)


MLFLOW_URI_VARIABLES = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")  # what MLflow sets beside its globals
_process_uri_lock = threading.Lock()
_process_uri_holders = 0
_process_uri_saved: dict[str, str | None] = {}


@contextmanager
def process_mlflow_uri(uri: str) -> Iterator[None]:
    """Point MLflow's process-wide tracking and registry URIs at `uri` for the calls that read
    only those (the fluent `start_run`, `pyfunc.log_model`, `models:/` downloads); when the
    last holder leaves, put back what was there, environment variables included.

    Left set, they outlive the task: a process that runs several flows against different
    stores (a worker, a test session) would send the next `MlflowClient()` without a registry
    URI to the last flow's registry, and every subprocess it starts would inherit
    `MLFLOW_REGISTRY_URI`. Holders are counted, so sweep trials in threads of one process
    (one store) never see the URIs cleared under them.
    """
    import mlflow

    global _process_uri_holders, _process_uri_saved
    with _process_uri_lock:
        if _process_uri_holders == 0:
            _process_uri_saved = {name: os.environ.get(name) for name in MLFLOW_URI_VARIABLES}
        _process_uri_holders += 1
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)
    try:
        yield
    finally:
        with _process_uri_lock:
            _process_uri_holders -= 1
            if _process_uri_holders == 0:
                # With the globals cleared MLflow reads the URIs from the restored variables,
                # and a URI set before this call was in its variable too (MLflow sets both).
                mlflow.set_tracking_uri(None)
                mlflow.set_registry_uri(None)
                for name, value in _process_uri_saved.items():
                    if value is None:
                        os.environ.pop(name, None)
                    else:
                        os.environ[name] = value


def redact(text: str) -> str:
    """Hide passwords inside URIs and well-known token shapes."""
    text = _URI_PASSWORD.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text)
    return _TOKENS.sub("***", text)


def redact_params(params: dict[str, Any]) -> dict[str, Any]:
    """Redact values of secret-looking keys and secrets inside any string value."""
    clean = {}
    for key, value in params.items():
        if any(word in key.lower() for word in SECRET_KEYS) and value not in (None, ""):
            clean[key] = "***"
        else:
            clean[key] = redact(value) if isinstance(value, str) else value
    return clean


MAX_PARAMS_PER_REQUEST = 100  # MLflow's limit for one log-batch call
MAX_PARAM_CHARS = 6000  # MLflow's limit for one parameter value


def log_params(client, run_id: str, params: dict[str, Any]) -> None:
    """Log `params` (secrets redacted, None as "") in as few requests as MLflow allows: one
    request per parameter costs a server with basic auth a password check each (0.2 s on 2
    cores), about 20 s for the ~90 parameters of one run."""
    from mlflow.entities import Param

    entries = [
        Param(key, "" if value is None else str(value)[:MAX_PARAM_CHARS])
        for key, value in redact_params(params).items()
    ]
    for start in range(0, len(entries), MAX_PARAMS_PER_REQUEST):
        client.log_batch(run_id, params=entries[start : start + MAX_PARAMS_PER_REQUEST])


def resolve_tracking_uri(uri: str | None) -> str:
    """The tracking URI to use: the given one, MLFLOW_TRACKING_URI, or sqlite under .simpo/."""
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    folder = state_dir()
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / 'mlflow.db'}"


def default_artifact_location(tracking_uri: str) -> str | None:
    """Artifacts beside a local sqlite store, so everything stays under the working dir."""
    if tracking_uri.startswith("sqlite:///"):
        return (Path(tracking_uri.removeprefix("sqlite:///")).parent / "mlartifacts").resolve().as_uri()
    return None


def get_client(tracking_uri: str):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def ensure_experiment(client, name: str, tracking_uri: str) -> str:
    """The experiment id for `name`, creating it (with local artifacts) when missing."""
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    try:
        return client.create_experiment(name, artifact_location=default_artifact_location(tracking_uri))
    except Exception:  # created meanwhile by a concurrent run
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return experiment.experiment_id


def flatten(nested: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """`{"train": {"beta": 2}}` -> `{"train.beta": 2}`; lists become JSON text."""
    flat: dict[str, Any] = {}
    for key, value in nested.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        elif isinstance(value, (list, tuple)):
            flat[name] = json.dumps(value)
        else:
            flat[name] = value
    return flat


def numeric_metrics(block: dict[str, Any], prefix: str) -> dict[str, float]:
    """The numeric leaves of a nested metrics dict, keyed `prefix/a/b`, bools as 0/1."""
    metrics = {}
    for key, value in flatten(block).items():
        if isinstance(value, bool):
            value = float(value)
        if isinstance(value, (int, float)):
            metrics[f"{prefix}/{key.replace('.', '/')}"] = float(value)
    return metrics


def log_metrics(client, run_id: str, metrics: dict[str, float], step: int = 0) -> None:
    """Log many metrics in one call (MLflow keys allow letters, digits, _ - . / and space)."""
    import time

    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    batch = [Metric(_metric_key(key), float(value), now, step) for key, value in metrics.items()]
    for start in range(0, len(batch), 1000):
        client.log_batch(run_id, metrics=batch[start : start + 1000])


def _metric_key(key: str) -> str:
    return re.sub(r"[^\w\-./ ]", "_", key)


def log_dataset_input(
    tracking: Tracking, preview: Any, tags: dict[str, str], name: str, digest: str, context: str
) -> None:
    """Record a dataset as an input of the run: a preview frame, its tags (a code source with
    tags suits files, hub ids and generated data alike) and its digest (a change shows as new data)."""
    import mlflow
    from mlflow.data.code_dataset_source import CodeDatasetSource
    from mlflow.exceptions import MlflowException

    dataset = mlflow.data.from_pandas(preview, source=CodeDatasetSource(tags=tags), name=name, digest=digest[:36])
    with process_mlflow_uri(tracking.uri), mlflow.start_run(run_id=tracking.run_id):
        try:
            mlflow.log_input(dataset, context=context)
        except MlflowException:
            # Two runs registering the same new dataset at once: one insert wins, and the
            # second attempt finds the dataset and links it.
            mlflow.log_input(dataset, context=context)
