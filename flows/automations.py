"""Prefect automations that watch the nightly retraining; `simpo deploy` keeps them up to date.

- `simpo-retrain/nightly crashed`: a flow run of the deployment entered Crashed. The flow's
  own `on_crashed` hook cannot run when the process is killed outright (SIGKILL, out of
  memory, a lost machine); the server still sees the Crashed state the worker reports.
  Failures are not watched here: the flow's `on_failure` hook already alerts, with the
  failed step.
- `simpo-retrain/nightly not finished`: a flow run became Late (due, but no worker took it),
  Pending or Running, and reached no final state within `LATE_AFTER`: a run nobody started,
  or one whose worker vanished with it still Running, which no hook can report.

Both send the nightly deployment's `alerts.block` notification (the block the failure hook
uses) when one is set; without one they only record their firing in the event feed.

The automations are matched by name and updated in place, so deploying again leaves one of
each. They are not owned by the deployment: `prefect deploy` deletes and recreates the
automations a deployment owns (its `triggers:`), which would drop these.
"""

from datetime import timedelta
from typing import Any
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.events.actions import DoNothing, SendNotification
from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture

NIGHTLY = "simpo-retrain/nightly"
# The flow's timeout is 22 h (flows/retrain.py): a run that is still not final an hour after
# that was never started or lost its worker. 23 h also fires before the next night's run.
LATE_AFTER = timedelta(hours=23)
# Not Scheduled: the scheduler creates runs days ahead, so Scheduled says nothing about lateness.
STARTED_STATES = ("Late", "Pending", "Running")
FINAL_STATES = ("Completed", "Failed", "TimedOut", "Crashed", "Cancelled")

CRASHED_SUBJECT = "{{ deployment.name }}: flow run {{ flow_run.name }} crashed"
LATE_SUBJECT = "{{ deployment.name }}: flow run {{ flow_run.name }} did not finish in time"
# `flow_run.state` is the state of the event that fired (for lateness: the one that opened
# the window), not the run's state now. The link needs the server's PREFECT_UI_URL.
RUN = "Flow run {{ flow_run.name }} ({{ flow_run.id }}) of {{ flow.name }}/{{ deployment.name }}"
LINK = "\n{{ flow_run|ui_url or '' }}"
CRASHED_BODY = RUN + " crashed: {{ flow_run.state.message or 'no message' }}" + LINK


def automation_names(deployment_name: str = NIGHTLY) -> tuple[str, str]:
    """The names of the crash and the lateness automation of a deployment."""
    return f"{deployment_name} crashed", f"{deployment_name} not finished"


def nightly_automations(
    deployment_name: str,
    deployment_id: UUID,
    block_document_id: UUID | None,
    late_after: timedelta = LATE_AFTER,
) -> list[AutomationCore]:
    """The crash and lateness automations of one deployment's flow runs."""
    crashed_name, late_name = automation_names(deployment_name)
    runs_of_deployment = {
        "match": {"prefect.resource.id": "prefect.flow-run.*"},
        "match_related": {"prefect.resource.id": f"prefect.deployment.{deployment_id}"},
        "for_each": {"prefect.resource.id"},  # one alert per flow run
    }
    crashed = EventTrigger(
        **runs_of_deployment, expect={"prefect.flow-run.Crashed"}, posture=Posture.Reactive, threshold=1
    )
    late = EventTrigger(
        **runs_of_deployment,
        after={f"prefect.flow-run.{state}" for state in STARTED_STATES},
        expect={f"prefect.flow-run.{state}" for state in FINAL_STATES},
        posture=Posture.Proactive,
        threshold=1,
        within=late_after,
    )
    window = _readable(late_after)
    return [
        AutomationCore(
            name=crashed_name,
            description="A nightly retraining run crashed (killed, out of memory, lost machine). Set by simpo deploy.",
            trigger=crashed,
            actions=[_notify(block_document_id, CRASHED_SUBJECT, CRASHED_BODY)],
        ),
        AutomationCore(
            name=late_name,
            description=f"A nightly retraining run was late or still unfinished {window} after. Set by simpo deploy.",
            trigger=late,
            actions=[_notify(block_document_id, LATE_SUBJECT, _late_body(window))],
        ),
    ]


def ensure_automations(
    deployment_name: str = NIGHTLY, block: str | None = None, late_after: timedelta = LATE_AFTER
) -> list[UUID]:
    """Create or update the automations of `deployment_name`; their ids.

    `block` is a notification block slug (`type-slug/name`, as `alerts.block`); it must exist.
    """
    from flows.alerts import load_block

    block_document_id = load_block(block)._block_document_id if block else None
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name(deployment_name)
        wanted = nightly_automations(deployment_name, deployment.id, block_document_id, late_after)
        return [_upsert(client, automation) for automation in wanted]


def _upsert(client: Any, automation: AutomationCore) -> UUID:
    """Update the automation of this name (removing duplicates), or create it."""
    existing = client.read_automations_by_name(automation.name)
    if not existing:
        return client.create_automation(automation)
    kept, *duplicates = existing
    client.update_automation(kept.id, automation)
    for duplicate in duplicates:
        client.delete_automation(duplicate.id)
    return kept.id


def _notify(block_document_id: UUID | None, subject: str, body: str) -> Any:
    if block_document_id is None:
        return DoNothing()
    return SendNotification(block_document_id=block_document_id, subject=subject, body=body)


def _late_body(window: str) -> str:
    return (
        RUN + " became {{ flow_run.state.name }} at {{ flow_run.state.timestamp }} and reached no final state"
        f" within {window} (not started, or its worker is gone)." + LINK
    )


def _readable(duration: timedelta) -> str:
    seconds = int(duration.total_seconds())
    return f"{seconds // 3600} h" if seconds % 3600 == 0 else f"{seconds} s"
