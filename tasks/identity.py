"""The training identity tasks: what this training is, and what the registry already decided about it.

The registry is the record: every version carries the identity of the training that made
it (`training.identity`) and the gate records its decision on the version together with
the evaluation and gate settings it was taken under (`promotion.gate_identity`). A nightly
run on an unchanged export skips a decided training, regates one that was registered but
never decided (or decided under other settings), and trains only what is new
(`simpo_core.gate.rerun`). Prefect's task cache is not used for this on purpose: cached results
live in the result storage of the worker that ran the task, while the registry is shared by
every worker and survives them.
"""

from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from simpo_core.gate.identity import model_identity, resolved_training, training_code_version, training_identity
from simpo_core.gate.rerun import RerunPlan, VersionRecord, plan_rerun
from tasks.helpers.champion import current_champion
from tasks.helpers.retry import COMPUTE_TASK, IO_TASK, tracking_errors
from tasks.helpers.tracking import get_client

IDENTITY_TAG = "training.identity"
DECISION_TAG = "promotion.decision"
GATE_TAG = "promotion.gate_identity"
ROLLED_BACK_TAG = "champion.rolled_back"


@task(name="training-identity", timeout_seconds=3600, **COMPUTE_TASK)
def training_identity_task(
    data_fingerprint: str,
    data_settings: dict[str, Any],
    training: Any,
    model_source: str,
    device: str,
    quantization: str = "none",
) -> str:
    """The identity of this training (the starting model's weights are hashed once, then cached)."""
    resolved = resolved_training(training, device, quantization)
    identity = training_identity(data_fingerprint, data_settings, resolved, model_identity(model_source))
    get_run_logger().info("training identity %s (code %s)", identity[:12], training_code_version())
    return identity


@task(name="check-training-identity", timeout_seconds=900, **IO_TASK)
def check_training_identity_task(
    identity: str, name: str, tracking_uri: str, current_gate: str, force: bool
) -> RerunPlan:
    """Train, skip or regate: what the registry's versions of this identity call for."""
    with tracking_errors(tracking_uri, "looking up the training identity"):
        versions = [] if force else versions_with_identity(get_client(tracking_uri), name, identity)
    plan = plan_rerun(identity, versions, current_gate, name, force)
    get_run_logger().info("training identity %s: %s", identity[:12], plan.reason)
    create_markdown_artifact(
        f"# Training identity\n\n`{identity}`\n\n**{plan.action}**: {plan.reason}\n",
        key="training-identity",
        description="train, skip or regate",
    )
    return plan


def versions_with_identity(client: Any, name: str, identity: str) -> list[VersionRecord]:
    """The versions of `name` trained from `identity`, with what the gate recorded on each."""
    from mlflow.exceptions import MlflowException

    try:
        versions = client.search_model_versions(f"name = '{name}'")
    except MlflowException:
        return []
    champion = current_champion(client, name)
    champion_version = str(champion.version) if champion is not None else None
    return [
        VersionRecord(
            version=str(version.version),
            decision=version.tags.get(DECISION_TAG),
            gate_identity=version.tags.get(GATE_TAG),
            is_champion=str(version.version) == champion_version,
            rolled_back=ROLLED_BACK_TAG in version.tags,
        )
        for version in versions
        if version.tags.get(IDENTITY_TAG) == identity
    ]
