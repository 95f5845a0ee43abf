"""What a nightly schedule does to the flow: a decided training skips, an undecided one is regated
(never retrained, never registered twice). A dead worker's rerun resumes: test_first_run.py."""

from pathlib import Path

import pytest
from mlflow import MlflowClient

pytestmark = pytest.mark.slow  # started first, so the workers finish together (tests/conftest.py)

STRICT = "registry.min_gain=0.99"  # no challenger clears this: the version is refused


def client_of(run_flow) -> MlflowClient:
    return MlflowClient(tracking_uri=run_flow.tracking_uri, registry_uri=run_flow.tracking_uri)


def versions(run_flow) -> list[int]:
    return sorted(int(v.version) for v in client_of(run_flow).search_model_versions("name = 'simpo-policy'"))


def evaluated(summary) -> bool:
    return (Path(summary["run_dir"]) / "eval").exists()


def test_reruns_skip_what_was_decided_regate_what_was_not_and_force_or_new_data_train(run_flow):
    first = run_flow(STRICT)
    assert first["skipped"] is False and first["regated"] is False and first["promoted"] is False
    assert first["model_version"] == "1" and first["train_steps"] == 60

    # The worker died between register and promote: the version carries no decision.
    client = client_of(run_flow)
    client.delete_model_version_tag("simpo-policy", "1", "promotion.decision")
    undecided = run_flow(STRICT)
    assert undecided["regated"] is True and undecided["skipped"] is False, undecided["promotion_reason"]
    assert "never gated" in undecided["regate_reason"] and undecided["model_version"] == "1"
    assert undecided["train_steps"] == 0 and not evaluated(undecided)  # its held-out result was reused
    assert undecided["heldout"]["trained"]["pair_outcomes"] == first["heldout"]["trained"]["pair_outcomes"]
    assert client.get_model_version("simpo-policy", "1").tags["promotion.decision"] == "rejected"

    decided = run_flow(STRICT)
    assert decided["skipped"] is True and "under the same gate" in decided["skip_reason"]

    # Other evaluation settings: the same version is evaluated again, then gated.
    reevaluated = run_flow(STRICT, "eval.generation_samples=3")
    assert reevaluated["regated"] is True and reevaluated["train_steps"] == 0 and evaluated(reevaluated)

    # A looser gate may promote a version a stricter one refused.
    looser = run_flow()
    assert looser["regated"] is True and looser["promoted"] is True, looser["promotion_reason"]
    assert looser["champion_version"] == "1" and versions(run_flow) == [1]
    again = run_flow()
    assert again["skipped"] is True and "is the champion" in again["skip_reason"]
    assert "pass --force to retrain anyway" in again["skip_reason"] and again["train_steps"] == 0
    assert not evaluated(again) and versions(run_flow) == [1]

    forced = run_flow("force=true")
    assert forced["skipped"] is False and forced["reused_training"] is False and forced["train_steps"] == 60
    new_data = run_flow("data.source=synthetic:n=400,bias=0.0,seed=5")
    assert new_data["skipped"] is False and new_data["training_identity"] != first["training_identity"]
    assert versions(run_flow) == [1, 2, 3]
