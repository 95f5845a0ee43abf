"""The champion gate end to end on the embedded default: real gains win, reruns of equal
quality do not, and every decision comes with its model card."""

import pytest
from mlflow import MlflowClient

pytestmark = pytest.mark.slow  # started first, so the workers finish together (tests/conftest.py)

DATA = "data.source=synthetic:n=2000,bias=0.0,seed=1"  # 212 held-out pairs


def test_a_clearly_better_model_replaces_a_weak_champion_and_an_equal_rerun_does_not(run_flow):
    weak = run_flow(DATA, "train.max_steps=80")
    assert weak["promoted"] is True, weak["promotion_reason"]
    strong = run_flow(DATA, "train.max_steps=200")
    assert strong["promoted"] is True, strong["promotion_reason"]
    assert f"beats champion v{weak['model_version']}" in strong["promotion_reason"]
    rerun = run_flow(DATA, "train.max_steps=200", "train.seed=7")
    assert rerun["promoted"] is False, rerun["promotion_reason"]
    assert "not significant" in rerun["promotion_reason"] and "McNemar exact p=" in rerun["promotion_reason"]

    client = MlflowClient(tracking_uri=run_flow.tracking_uri, registry_uri=run_flow.tracking_uri)
    assert str(client.get_model_version_by_alias("simpo-policy", "champion").version) == strong["model_version"]
    version = client.get_model_version("simpo-policy", rerun["model_version"])
    assert version.tags["promotion.decision"] == "rejected"
    assert f"# simpo-policy v{rerun['model_version']}" in version.description
    assert "| reward accuracy |" in version.description and "champion |" in version.description
    strong_version = client.get_model_version("simpo-policy", strong["model_version"])
    assert strong_version.tags["champion.previous"] == weak["model_version"]
    card = client.download_artifacts(rerun["mlflow_run_id"], "model_card.md")
    assert "**Gate: not promoted.**" in open(card).read()
