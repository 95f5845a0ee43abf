from pathlib import Path

import pytest
import yaml

from flows.params import RetrainParams, validate_params

PREFECT_FILE = Path(__file__).resolve().parents[2] / "deployments" / "prefect.yaml"
DEPLOYMENTS = yaml.safe_load(PREFECT_FILE.read_text())["deployments"]


@pytest.mark.parametrize("deployment", DEPLOYMENTS, ids=[d["name"] for d in DEPLOYMENTS])
def test_deployment_parameters_validate(deployment):
    params = validate_params(deployment["parameters"]["params"])
    assert isinstance(params, RetrainParams)
    assert deployment["entrypoint"] == "flows/retrain.py:simpo_retrain"


def test_nightly_runs_on_a_cron_schedule_in_a_process_pool():
    nightly = next(d for d in DEPLOYMENTS if d["name"] == "nightly")
    assert nightly["schedules"][0]["cron"] == "0 3 * * *"
    assert nightly["work_pool"]["name"] == "simpo-process"


def test_entrypoint_resolves_to_the_flow():
    from prefect.flows import load_flow_from_entrypoint

    root = PREFECT_FILE.parents[1]
    flow = load_flow_from_entrypoint(str(root / "flows/retrain.py") + ":simpo_retrain")
    assert flow.name == "simpo-retrain"
