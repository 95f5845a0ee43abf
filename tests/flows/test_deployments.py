from pathlib import Path

import pytest
import yaml

from flows.params import RetrainParams, validate_params

PREFECT_FILE = Path(__file__).resolve().parents[2] / "deployments" / "prefect.yaml"
GPU_FILE = PREFECT_FILE.with_name("prefect-gpu.yaml")  # the example for a GPU work pool
DEPLOYMENTS = yaml.safe_load(PREFECT_FILE.read_text())["deployments"]
EVERY_DEPLOYMENT = DEPLOYMENTS + yaml.safe_load(GPU_FILE.read_text())["deployments"]


@pytest.mark.parametrize("deployment", EVERY_DEPLOYMENT, ids=[d["name"] for d in EVERY_DEPLOYMENT])
def test_deployment_parameters_validate(deployment):
    params = validate_params(deployment["parameters"]["params"])
    assert isinstance(params, RetrainParams)
    assert deployment["entrypoint"] == "flows/retrain.py:simpo_retrain"


def test_the_gpu_deployment_trains_sharded_on_as_many_processes_as_the_pod_has_gpus():
    gpu = next(d for d in EVERY_DEPLOYMENT if d["name"] == "nightly-gpu")
    train = validate_params(gpu["parameters"]["params"]).train
    limits = gpu["work_pool"]["job_variables"]["resources"]["limits"]
    assert train.strategy == "fsdp" and train.num_processes == limits["nvidia.com/gpu"]
    assert train.effective_batch_size == 128 and train.precision == "bf16-mixed"


def test_nightly_runs_on_a_cron_schedule_in_a_process_pool():
    nightly = next(d for d in DEPLOYMENTS if d["name"] == "nightly")
    assert nightly["schedules"][0]["cron"] == "0 3 * * *"
    assert nightly["work_pool"]["name"] == "simpo-process"


def test_entrypoint_resolves_to_the_flow():
    from prefect.flows import load_flow_from_entrypoint

    root = PREFECT_FILE.parents[1]
    flow = load_flow_from_entrypoint(str(root / "flows/retrain.py") + ":simpo_retrain")
    assert flow.name == "simpo-retrain"


def test_every_deployment_runs_one_at_a_time():
    """nightly skips a run due while one is active (CANCEL_NEW); smoke queues manual runs."""
    strategies = {d["name"]: d["concurrency_limit"] for d in DEPLOYMENTS}
    assert strategies["nightly"] == {"limit": 1, "collision_strategy": "CANCEL_NEW"}
    assert strategies["smoke"] == {"limit": 1, "collision_strategy": "ENQUEUE"}


# The steps of a run on one source, each attempted once (deployments/README.md, "Time budget").
ONE_SOURCE_PATH = (
    "start-tracking",
    "load-preferences",
    "validate-preferences",
    "audit-length-balance",
    "split-holdout",
    "check-training-identity",
    "train-simpo",
    "evaluate-holdout",
    "register-model",
    "promote-model",
    "end-tracking",
)


def test_step_timeouts_fit_inside_the_flow_timeout_and_the_nightly_period():
    """One attempt of every step fits the flow's timeout, which ends before the next nightly run."""
    from prefect.tasks import Task

    import flows.retrain as retrain

    steps = {value.name: value.timeout_seconds for value in vars(retrain).values() if isinstance(value, Task)}
    path = {name: steps[name] for name in ONE_SOURCE_PATH}
    assert all(path.values()), path
    flow_timeout = retrain.simpo_retrain.timeout_seconds
    assert sum(path.values()) < flow_timeout < 24 * 3600, (sum(path.values()) / 3600, flow_timeout / 3600)
    assert all(timeout for timeout in steps.values()), "every task needs a timeout"
