"""Who holds the `champion` alias, how it got there, and moving it back.

Every move of the alias is recorded twice: as tags on the version it moved to (who, when,
why, and the version it replaced) and as one event in the registered model's
`champion.history` tag, a JSON list that `simpo registry` prints. `simpo rollback` and the
`promote-model` task both move the alias through `move_champion`.

Each move is also announced as the Prefect event `simpo.champion.moved` on the resource
`mlflow.registered-model.<name>`, so automations (e.g. the `refresh-serving` deployment's
trigger in deployments/prefect.yaml) react to a new champion without polling the registry.
"""

import getpass
import json
import logging
from datetime import UTC, datetime
from typing import Any

from simpo_core.errors import ConfigError

CHAMPION = "champion"
HISTORY_TAG = "champion.history"
MAX_TAG_CHARS = 5000  # registered-model tag values are bounded; the oldest events go first
CHAMPION_MOVED = "simpo.champion.moved"


def model_resource_id(name: str) -> str:
    """The Prefect resource id of a registered model: what champion events are about."""
    return f"mlflow.registered-model.{name}"


def current_champion(client: Any, name: str) -> Any | None:
    """The version holding the `champion` alias, or None."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None


def read_history(client: Any, name: str) -> list[dict[str, Any]]:
    """The recorded moves of the alias, oldest first."""
    raw = client.get_registered_model(name).tags.get(HISTORY_TAG)
    return json.loads(raw) if raw else []


def _record(client: Any, name: str, event: dict[str, Any]) -> None:
    history = read_history(client, name) + [event]
    while len(history) > 1 and len(json.dumps(history)) > MAX_TAG_CHARS:
        history.pop(0)
    client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(history))


def move_champion(client: Any, name: str, version: str, *, action: str, reason: str) -> dict[str, Any]:
    """Point `champion` at `version`, tagging it with who, when, why and what it replaced."""
    previous = current_champion(client, name)
    event = {
        "version": str(version),
        "action": action,
        "previous": str(previous.version) if previous else None,
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "by": getpass.getuser(),
        "reason": reason[:500],
    }
    for key in ("previous", "at", "by", "reason"):
        client.set_model_version_tag(name, str(version), f"champion.{key}", event[key] or "none")
    client.set_registered_model_alias(name, CHAMPION, str(version))
    _record(client, name, event)
    announce_move(name, event)
    return event


def announce_move(name: str, event: dict[str, Any]) -> None:
    """Emit `simpo.champion.moved` for a move that already happened; never raises.

    Sent only where a Prefect API is in reach: inside a flow or task run, or with
    PREFECT_API_URL set. A bare `simpo rollback` on a laptop would otherwise start a
    throwaway local server just to send an event nobody can see. Inside a run, Prefect adds
    the flow run, task run and deployment as related resources.
    """
    try:
        from prefect.context import FlowRunContext, TaskRunContext
        from prefect.events import emit_event
        from prefect.settings import PREFECT_API_URL

        if not (PREFECT_API_URL.value() or FlowRunContext.get() or TaskRunContext.get()):
            return
        emit_event(
            CHAMPION_MOVED,
            resource={"prefect.resource.id": model_resource_id(name), "prefect.resource.name": name},
            related=[
                {
                    "prefect.resource.id": f"mlflow.model-version.{name}.{event['version']}",
                    "prefect.resource.role": "model-version",
                    "prefect.resource.name": f"{name} v{event['version']}",
                }
            ],
            payload={"name": name, **event},
        )
    except Exception as error:  # the alias has moved: a lost announcement must not undo or hide that
        _logger().warning(
            "champion of %s moved to v%s, but %s was not emitted: %s", name, event["version"], CHAMPION_MOVED, error
        )


def _logger() -> Any:
    """The run's logger (its lines show in the Prefect UI), or a plain one outside a run."""
    try:
        from prefect.logging import get_run_logger

        return get_run_logger()
    except Exception:
        return logging.getLogger("simpo.champion")


def rollback(client: Any, name: str, reason: str, to_version: str | None = None) -> dict[str, Any]:
    """Move `champion` back: to `to_version`, or to the version the current champion replaced.

    Raises:
        ConfigError: no champion, nothing recorded to go back to, an unknown version, or
            the version already is the champion.
    """
    from mlflow.exceptions import MlflowException

    current = current_champion(client, name)
    if current is None:
        raise ConfigError(f"{name!r} has no champion to roll back; nothing was changed")
    target = to_version or current.tags.get("champion.previous")
    if not target or target == "none":
        raise ConfigError(f"champion v{current.version} of {name!r} replaced no earlier champion; pass --to VERSION")
    if str(target) == str(current.version):
        raise ConfigError(f"version {target} already is the champion of {name!r}")
    try:
        client.get_model_version(name, str(target))
    except MlflowException as error:
        raise ConfigError(f"{name!r} has no version {target}; `simpo registry` lists them") from error
    client.set_model_version_tag(name, str(current.version), "champion.rolled_back", reason[:500])
    return move_champion(client, name, str(target), action="rollback", reason=reason)
