"""`simpo-refresh-serving` stages the champion where the model server reads it."""

import json
import os

import pytest
from mlflow import MlflowClient

from tasks.helpers.champion import move_champion

NAME = "simpo-policy"


@pytest.fixture
def registry(tmp_path):
    """Three versions whose files say which version they are."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.create_registered_model(NAME)
    for version in ("1", "2", "3"):
        model = tmp_path / "models" / version
        model.mkdir(parents=True)
        (model / "MLmodel").write_text(f"version: {version}\n")
        (model / "weights.bin").write_bytes(version.encode() * 64)
        client.create_model_version(NAME, source=model.as_uri())
    return client, uri


def test_serving_follows_the_champion_and_keeps_the_previous_one(prefect_harness, registry, tmp_path):
    from flows.serving import refresh_serving

    client, uri = registry
    serving = tmp_path / "serving"
    current = serving / NAME / "current"

    def refresh(version):
        move_champion(client, NAME, version, action="promoted", reason="test")
        return refresh_serving(NAME, version=version, serving_dir=str(serving), tracking_uri=uri)

    first = refresh("1")
    assert (current / "MLmodel").read_text() == "version: 1\n"
    assert first["version"] == "1" and first["previous"] is None
    refresh("2")
    third = refresh("3")
    assert (current / "weights.bin").read_bytes() == b"3" * 64
    assert os.readlink(current) == "v3" and third["previous"] == "v2"
    # The previous champion stays for a quick rollback; the one before it is gone.
    assert sorted(p.name for p in (serving / NAME).iterdir() if not p.name.startswith(".")) == [
        "current",
        "current.json",
        "v2",
        "v3",
    ]
    assert json.loads((serving / NAME / "current.json").read_text())["model_uri"] == f"models:/{NAME}/3"

    # An event that announced v2, handled after the alias moved on to v3: the alias wins.
    late = refresh_serving(NAME, version="2", serving_dir=str(serving), tracking_uri=uri)
    assert late["version"] == "3" and late["announced"] == "2" and os.readlink(current) == "v3"
