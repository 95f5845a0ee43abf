"""`simpo deploy` against a real Prefect server on 127.0.0.1: the nightly run's automations exist
once, notify the alert block when a run crashes or does not finish, and a champion move runs
the serving refresh through its deployment trigger."""

import os
import subprocess
import sys
import time
from datetime import timedelta

import pytest
import yaml
from mlflow import MlflowClient
from prefect_events import wait_for_events
from servers import prefect_api, prefect_server
from test_alerts import webhook_receiver

from flows.automations import FINAL_STATES, LATE_AFTER, automation_names, ensure_automations
from flows.commands.deploy import PREFECT_FILE, deploy_automations
from simpo_core.errors import ConfigError
from tasks.helpers.champion import CHAMPION_MOVED, model_resource_id

pytestmark = pytest.mark.slow

CRASHED, LATE = automation_names()
CHAMPION_TRIGGER = "simpo-policy champion moved"


@pytest.fixture(scope="module")
def deployed(tmp_path_factory):
    """One server for the module with what `simpo deploy` registered: (API URL, what it read
    back right after the deploy, before any test changed it)."""
    folder = tmp_path_factory.mktemp("prefect-server")
    with prefect_server(folder) as api_url:
        env = {**os.environ, "PREFECT_API_URL": api_url}
        done = subprocess.run(
            [sys.executable, "-m", "flows.cli", "deploy"], env=env, cwd=folder, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr[-3000:]
        with prefect_api(api_url):
            yield api_url, read_state()


@pytest.fixture
def api(deployed):
    """This process's Prefect client settings pointed at the module's server."""
    with prefect_api(deployed[0]) as api_url:
        yield api_url


def read_state():
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        nightly = client.read_deployment_by_name("simpo-retrain/nightly")
        refresh = client.read_deployment_by_name("simpo-refresh-serving/refresh-serving")
        automations = client.read_automations()
    return nightly, refresh, automations


def test_deploy_creates_the_nightly_automations_and_the_serving_trigger(deployed):
    nightly, refresh, automations = deployed[1]
    by_name = {automation.name: automation for automation in automations}
    assert sorted(by_name) == sorted([CRASHED, LATE, CHAMPION_TRIGGER]) and len(automations) == 3

    crashed, late = by_name[CRASHED].trigger, by_name[LATE].trigger
    for trigger in (crashed, late):
        assert trigger.match_related["prefect.resource.id"] == [f"prefect.deployment.{nightly.id}"]
        assert trigger.for_each == {"prefect.resource.id"}  # one alert per flow run
    assert crashed.posture == "Reactive" and crashed.expect == {"prefect.flow-run.Crashed"}
    assert late.posture == "Proactive" and late.within == LATE_AFTER == timedelta(hours=23)
    assert late.after == {"prefect.flow-run.Late", "prefect.flow-run.Pending", "prefect.flow-run.Running"}
    assert late.expect == {f"prefect.flow-run.{state}" for state in FINAL_STATES}
    # No alerts.block in deployments/prefect.yaml: the automations only record their firing.
    assert [action.type for action in by_name[CRASHED].actions + by_name[LATE].actions] == ["do-nothing"] * 2

    moved = by_name[CHAMPION_TRIGGER]
    assert moved.trigger.expect == {CHAMPION_MOVED}
    assert moved.trigger.match["prefect.resource.id"] == [model_resource_id("simpo-policy")]
    [run] = moved.actions
    assert run.type == "run-deployment" and run.deployment_id == refresh.id
    assert run.parameters == {"version": "{{ event.payload.version }}"}


def test_automations_are_updated_in_place_and_notify_the_alert_block(api, deployed, tmp_path):
    from prefect.blocks.notifications import CustomWebhookNotificationBlock

    before = {automation.name: automation.id for automation in deployed[1][2]}
    prefect_file = with_alert_block(tmp_path, "custom-webhook/simpo-alerts")

    with webhook_receiver() as (url, bodies):
        block = CustomWebhookNotificationBlock(
            name="simpo alerts", url=url, json_data={"subject": "{{subject}}", "text": "{{body}}"}
        )
        block_id = block.save("simpo-alerts", overwrite=True)
        deploy_automations(prefect_file)
        deploy_automations(prefect_file)  # what a second `simpo deploy` does

        nightly, _, automations = read_state()
        assert {automation.name: automation.id for automation in automations} == before  # same ones, no new
        for automation in (a for a in automations if a.name in (CRASHED, LATE)):
            [notify] = automation.actions
            assert notify.type == "send-notification" and notify.block_document_id == block_id

        # A window short enough to watch; the same automation, updated.
        ensure_automations(block="custom-webhook/simpo-alerts", late_after=timedelta(seconds=10))
        crashed_run, unfinished_run = run_nightly(nightly.id, crash=True), run_nightly(nightly.id, crash=False)
        deadline = time.monotonic() + 90
        while len(bodies) < 2 and time.monotonic() < deadline:
            time.sleep(0.5)
        time.sleep(6)  # a duplicate, or a lateness alert for the crashed run, would arrive now
    by_subject = {body["subject"]: body["text"] for body in bodies}
    assert len(bodies) == 2 and set(by_subject) == {
        f"nightly: flow run {crashed_run.name} crashed",
        f"nightly: flow run {unfinished_run.name} did not finish in time",
    }, bodies
    crashed_text = by_subject[f"nightly: flow run {crashed_run.name} crashed"]
    assert f"({crashed_run.id}) of simpo-retrain/nightly crashed: worker lost" in crashed_text
    late_text = by_subject[f"nightly: flow run {unfinished_run.name} did not finish in time"]
    assert f"({unfinished_run.id}) of simpo-retrain/nightly became Pending at " in late_text
    assert "reached no final state within 10 s" in late_text


def test_deploy_refuses_an_alert_block_that_does_not_load(api, tmp_path):
    before = read_state()[2]
    with pytest.raises(ConfigError, match="alerts.block 'custom-webhook/no-such-block' .* does not load"):
        deploy_automations(with_alert_block(tmp_path, "custom-webhook/no-such-block"))
    assert read_state()[2] == before


def with_alert_block(folder, block: str):
    """A copy of deployments/prefect.yaml whose nightly deployment notifies `block`."""
    config = yaml.safe_load(PREFECT_FILE.read_text())
    nightly_params = next(d for d in config["deployments"] if d["name"] == "nightly")["parameters"]["params"]
    nightly_params["alerts"]["block"] = block
    prefect_file = folder / "prefect.yaml"
    prefect_file.write_text(yaml.safe_dump(config))
    return prefect_file


def run_nightly(deployment_id, crash: bool):
    """A run of the nightly deployment moved as a worker would: Pending, Running, then Crashed
    (or left Running, as when its worker vanishes with it)."""
    from prefect.client.orchestration import get_client
    from prefect.states import Crashed, Pending, Running

    with get_client(sync_client=True) as client:
        run = client.create_flow_run_from_deployment(deployment_id)
        for state in (Pending(), Running(), *([Crashed(message="worker lost")] if crash else [])):
            result = client.set_flow_run_state(run.id, state, force=True)
            assert result.status.value == "ACCEPT", result
    return run


def test_a_champion_rollback_runs_the_serving_refresh(api, tmp_path):
    """`simpo rollback` emits the event; the trigger starts a refresh run for the new champion."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    registry = MlflowClient(tracking_uri=uri, registry_uri=uri)
    registry.create_registered_model("simpo-policy")
    for _ in range(2):
        registry.create_model_version("simpo-policy", source=(tmp_path / "model").as_uri())
    registry.set_registered_model_alias("simpo-policy", "champion", "2")

    env = {**os.environ, "PREFECT_API_URL": api}
    command = ["rollback", "--to", "1", "--reason", "v2 answers badly", "--tracking-uri", uri]
    done = subprocess.run([sys.executable, "-m", "flows.cli", *command], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]

    [event] = wait_for_events(CHAMPION_MOVED, model_resource_id("simpo-policy"), count=1)
    assert {key: event.payload[key] for key in ("name", "version", "previous", "action", "reason")} == {
        "name": "simpo-policy",
        "version": "1",
        "previous": "2",
        "action": "rollback",
        "reason": "v2 answers badly",
    }
    refresh = read_state()[1]
    deadline, runs = time.monotonic() + 60, []
    while not runs and time.monotonic() < deadline:
        time.sleep(0.5)
        with get_client(sync_client=True) as client:
            runs = client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[refresh.id])))
    [run] = runs
    assert run.parameters == {"registered_model_name": "simpo-policy", "serving_dir": "serving", "version": "1"}
