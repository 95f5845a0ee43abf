"""Operating the registry: champion moves recorded, `simpo rollback`, `simpo registry`."""

import json

import pytest
from mlflow import MlflowClient

from flows.cli import main
from simpo_core.errors import ConfigError
from tasks.helpers.champion import move_champion, read_history, rollback

NAME = "simpo-policy"


@pytest.fixture
def registry(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.create_registered_model(NAME)
    for _ in range(3):
        client.create_model_version(NAME, source=(tmp_path / "model").as_uri())
    return client, uri


def champion(client):
    return str(client.get_model_version_by_alias(NAME, "champion").version)


def test_rollback_goes_back_to_the_replaced_champion_and_records_who_and_why(registry):
    client, _ = registry
    move_champion(client, NAME, "1", action="promoted", reason="first")
    move_champion(client, NAME, "2", action="promoted", reason="better")
    event = rollback(client, NAME, "v2 answers badly in production")
    assert champion(client) == "1" and event["previous"] == "2"
    tags = client.get_model_version(NAME, "1").tags
    assert tags["champion.reason"] == "v2 answers badly in production" and tags["champion.by"]
    assert client.get_model_version(NAME, "2").tags["champion.rolled_back"] == "v2 answers badly in production"
    assert [(e["version"], e["action"]) for e in read_history(client, NAME)] == [
        ("1", "promoted"),
        ("2", "promoted"),
        ("1", "rollback"),
    ]


def test_rollback_refuses_what_it_cannot_do(registry):
    client, _ = registry
    with pytest.raises(ConfigError, match="has no champion to roll back"):
        rollback(client, NAME, "why")
    move_champion(client, NAME, "1", action="promoted", reason="first")
    with pytest.raises(ConfigError, match="replaced no earlier champion; pass --to VERSION"):
        rollback(client, NAME, "why")
    with pytest.raises(ConfigError, match="has no version 9"):
        rollback(client, NAME, "why", to_version="9")
    assert champion(client) == "1"


def test_cli_rollback_and_registry(registry, capsys):
    client, uri = registry
    move_champion(client, NAME, "2", action="promoted", reason="gate")
    assert main(["rollback", "--to", "3", "--reason", "pin v3", "--tracking-uri", uri, "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["version"] == "3"
    assert main(["registry", "--tracking-uri", uri, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert shown["champion_version"] == "3" and [e["action"] for e in shown["history"]] == ["promoted", "rollback"]
    assert [row["version"] for row in shown["versions"]] == ["1", "2", "3"]
    assert main(["rollback", "--reason", "x", "--tracking-uri", uri, "--name", "nope"]) == 1
