import os

import mlflow

from tasks.helpers.tracking import (
    default_artifact_location,
    flatten,
    numeric_metrics,
    process_mlflow_uri,
    redact,
    redact_params,
)


def test_redact_hides_uri_passwords_and_tokens():
    text = "postgresql://alice:s3cret@db:5432/mlflow and token hf_abcdefghijklmnopqrstuvwxyz"
    clean = redact(text)
    assert "s3cret" not in clean and "hf_abcdefghijklmnop" not in clean
    assert "postgresql://alice:***@db:5432/mlflow" in clean


def test_redact_params_hides_secret_keys():
    params = {"registry.tracking_uri": "http://bob:pw123@host", "hub.token": "abc", "train.lr": 0.1}
    clean = redact_params(params)
    assert clean == {"registry.tracking_uri": "http://bob:***@host", "hub.token": "***", "train.lr": 0.1}


def test_flatten_and_numeric_metrics():
    nested = {"base": {"reward_accuracy": 0.5, "ci": [0.4, 0.6], "generation": {"collapsed": True, "note": "x"}}}
    assert flatten(nested)["base.ci"] == "[0.4, 0.6]"
    assert numeric_metrics(nested, "eval") == {
        "eval/base/reward_accuracy": 0.5,
        "eval/base/generation/collapsed": 1.0,
    }


def test_local_sqlite_store_keeps_artifacts_beside_it(tmp_path):
    location = default_artifact_location(f"sqlite:///{tmp_path}/mlflow.db")
    assert location == (tmp_path / "mlartifacts").as_uri()
    assert default_artifact_location("http://127.0.0.1:5000") is None


def test_process_mlflow_uri_points_mlflow_at_the_store_and_puts_back_what_was_there(monkeypatch, tmp_path):
    outer, inner = f"sqlite:///{tmp_path / 'a.db'}", f"sqlite:///{tmp_path / 'b.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", outer)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    mlflow.set_tracking_uri(None)
    mlflow.set_registry_uri(None)
    with process_mlflow_uri(inner):
        assert mlflow.get_tracking_uri() == mlflow.get_registry_uri() == inner
        with process_mlflow_uri(inner):  # a second holder (a sweep trial's thread) leaves the first's URIs
            pass
        assert mlflow.get_registry_uri() == inner
    assert mlflow.get_tracking_uri() == mlflow.get_registry_uri() == outer
    assert "MLFLOW_REGISTRY_URI" not in os.environ
