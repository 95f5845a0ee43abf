"""Every move of the champion is announced as the Prefect event `simpo.champion.moved`."""

import logging

import pytest
from mlflow import MlflowClient
from prefect_events import wait_for_events

from tasks.helpers.champion import CHAMPION_MOVED, model_resource_id, move_champion, rollback


@pytest.fixture
def registry(tmp_path):
    """A registered model with three versions in a sqlite store; a unique name per test,
    since the events of every test land on the same session server."""
    name = f"policy-{tmp_path.name}"
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.create_registered_model(name)
    for _ in range(3):
        client.create_model_version(name, source=(tmp_path / "model").as_uri())
    return client, name


def test_promotion_in_a_run_and_rollback_outside_it_are_announced(prefect_harness, registry):
    from prefect import flow, task

    client, name = registry

    @task(name="promote-model")
    def promote(version: str) -> None:
        move_champion(client, name, version, action="promoted", reason="beats the champion")

    @flow(name="promote-twice")
    def promote_twice() -> None:
        promote("1")
        promote("2")

    promote_twice()
    rollback(client, name, "v2 answers badly")  # outside any run: PREFECT_API_URL is set

    events = wait_for_events(CHAMPION_MOVED, model_resource_id(name), count=3)
    payloads = [event.payload for event in events]
    assert [(p["version"], p["previous"], p["action"]) for p in payloads] == [
        ("1", None, "promoted"),
        ("2", "1", "promoted"),
        ("1", "2", "rollback"),
    ]
    assert payloads[0]["name"] == name and payloads[0]["reason"] == "beats the champion"
    assert payloads[2]["reason"] == "v2 answers badly" and payloads[2]["by"]
    assert events[0].resource.name == name
    promoted_roles = {related.role for related in events[0].related}
    assert {"model-version", "flow-run", "task-run"} <= promoted_roles, promoted_roles
    assert events[2].related[0].id == f"mlflow.model-version.{name}.1"


def test_an_event_that_cannot_be_sent_is_a_warning_and_the_move_stands(registry, monkeypatch, caplog):
    import prefect.events
    from prefect.settings import PREFECT_API_URL, temporary_settings

    client, name = registry

    def unreachable(*args, **kwargs):
        raise ConnectionError("events endpoint down")

    monkeypatch.setattr(prefect.events, "emit_event", unreachable)
    with temporary_settings({PREFECT_API_URL: "http://127.0.0.1:9/api"}), caplog.at_level(logging.WARNING):
        event = move_champion(client, name, "3", action="promoted", reason="gate")
    assert event["version"] == "3"
    assert str(client.get_model_version_by_alias(name, "champion").version) == "3"
    assert "simpo.champion.moved was not emitted: events endpoint down" in caplog.text


def test_without_a_prefect_api_nothing_is_sent(registry, monkeypatch):
    """A local `simpo rollback` with no server must not start one just to send an event."""
    import prefect.events
    from prefect.settings import PREFECT_API_URL, temporary_settings

    client, name = registry
    sent = []
    monkeypatch.setattr(prefect.events, "emit_event", lambda *args, **kwargs: sent.append(args))
    with temporary_settings({PREFECT_API_URL: None}):
        move_champion(client, name, "1", action="promoted", reason="first")
    with temporary_settings({PREFECT_API_URL: "http://127.0.0.1:9/api"}):
        move_champion(client, name, "2", action="promoted", reason="second")
    assert sent == [(CHAMPION_MOVED,)]
