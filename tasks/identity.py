"""The `check-training-identity` task: has this exact training been registered already?

The registry is the record: every version carries the identity of the training that made
it (`training.identity`). A nightly run on an unchanged export finds the champion (or the
newest version) with its own identity and ends early. Prefect's task cache is not used for
this on purpose: cached results live in the result storage of the worker that ran the
task, while the registry is shared by every worker and survives them.
"""

from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from simpo_core.identity import model_identity, training_identity
from tasks.champion import current_champion
from tasks.retry import IO_TASK, tracking_errors
from tasks.tracking import get_client

IDENTITY_TAG = "training.identity"


@task(name="check-training-identity", timeout_seconds=900, **IO_TASK)
def check_training_identity_task(
    data_fingerprint: str,
    data_settings: dict[str, Any],
    training: dict[str, Any],
    model_source: str,
    name: str,
    tracking_uri: str,
    force: bool,
) -> dict[str, Any]:
    """The training identity, and the registered version already made from it (None when
    there is none, or when `force` asks to train anyway)."""
    identity = training_identity(data_fingerprint, data_settings, training, model_identity(model_source))
    with tracking_errors(tracking_uri, "looking up the training identity"):
        version = None if force else version_with_identity(get_client(tracking_uri), name, identity)
    if version is None:
        reason = "forced: training anyway" if force else "no registered version was trained from this identity"
    else:
        reason = (
            f"unchanged: {name} v{version} was trained from the same data, settings and starting model "
            f"(identity {identity[:12]}); nothing to retrain (pass --force to retrain anyway)"
        )
    get_run_logger().info("training identity %s: %s", identity[:12], reason)
    create_markdown_artifact(
        f"# Training identity\n\n`{identity}`\n\n{reason}\n", key="training-identity", description="skip or train"
    )
    return {"identity": identity, "existing_version": version, "reason": reason}


def version_with_identity(client: Any, name: str, identity: str) -> str | None:
    """The champion if it was trained from `identity`, else the newest version if it was."""
    from mlflow.exceptions import MlflowException

    champion = current_champion(client, name)
    if champion is not None and champion.tags.get(IDENTITY_TAG) == identity:
        return str(champion.version)
    try:
        versions = client.search_model_versions(f"name = '{name}'")
    except MlflowException:
        return None
    newest = max(versions, key=lambda v: int(v.version), default=None)
    if newest is not None and newest.tags.get(IDENTITY_TAG) == identity:
        return str(newest.version)
    return None
