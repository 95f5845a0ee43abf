from pathlib import Path

import pytest
import yaml

from flows.params import RetrainParams, validate_params

PREFECT_FILE = Path(__file__).resolve().parents[2] / "deployments" / "prefect.yaml"
GPU_FILE = PREFECT_FILE.with_name("prefect-gpu.yaml")  # the example for a GPU work pool
DEPLOYMENTS = yaml.safe_load(PREFECT_FILE.read_text())["deployments"]
EVERY_DEPLOYMENT = DEPLOYMENTS + yaml.safe_load(GPU_FILE.read_text())["deployments"]
RETRAIN = "flows/retrain.py:simpo_retrain"
REFRESH_SERVING = "flows/serving.py:refresh_serving"
RETRAINING = [d for d in EVERY_DEPLOYMENT if d["entrypoint"] == RETRAIN]


def test_every_deployment_runs_a_known_flow():
    """A deployment of another flow would escape the parameter checks below."""
    assert {d["entrypoint"] for d in EVERY_DEPLOYMENT} == {RETRAIN, REFRESH_SERVING}


@pytest.mark.parametrize("deployment", RETRAINING, ids=[d["name"] for d in RETRAINING])
def test_deployment_parameters_validate(deployment):
    params = validate_params(deployment["parameters"]["params"])
    assert isinstance(params, RetrainParams)


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


def test_the_on_policy_nightly_generates_from_prompts_and_judges_with_the_gate():
    on_policy = next(d for d in DEPLOYMENTS if d["name"] == "nightly-on-policy")
    params = validate_params(on_policy["parameters"]["params"])
    assert params.generate.prompts and params.generate.samples >= 2 and params.generate.judge == "synthetic"
    assert params.generate.max_prompt_length == params.train.max_prompt_length  # prompts fit the training
    assert on_policy["concurrency_limit"] == {"limit": 1, "collision_strategy": "CANCEL_NEW"}
    assert on_policy["schedules"][0]["cron"] != "0 3 * * *"  # not on top of the nightly run


def test_entrypoint_resolves_to_the_flow():
    from prefect.flows import load_flow_from_entrypoint

    root = PREFECT_FILE.parents[1]
    assert load_flow_from_entrypoint(str(root / RETRAIN)).name == "simpo-retrain"
    assert load_flow_from_entrypoint(str(root / REFRESH_SERVING)).name == "simpo-refresh-serving"


def test_every_deployment_runs_one_at_a_time():
    """nightly skips a run due while one is active (CANCEL_NEW); smoke queues manual runs."""
    strategies = {d["name"]: d["concurrency_limit"] for d in DEPLOYMENTS}
    assert strategies["nightly"] == {"limit": 1, "collision_strategy": "CANCEL_NEW"}
    assert strategies["smoke"] == {"limit": 1, "collision_strategy": "ENQUEUE"}
    # Two quick moves (a rollback and back) queue two refreshes; the last stages the final champion.
    assert strategies["refresh-serving"] == {"limit": 1, "collision_strategy": "ENQUEUE"}


def _announced_payload(name: str) -> dict:
    """The payload `move_champion` sends, caught on its way out."""
    from unittest.mock import patch

    from prefect.settings import PREFECT_API_URL, temporary_settings

    from tasks.helpers.champion import announce_move

    sent = []
    with patch("prefect.events.emit_event", lambda *args, **kwargs: sent.append(kwargs)):
        with temporary_settings({PREFECT_API_URL: "http://127.0.0.1:9/api"}):
            event = {"version": "7", "action": "rollback", "previous": "8", "at": "now", "by": "me", "reason": "r"}
            announce_move(name, event)
    return sent[0]


def test_the_serving_refresh_is_triggered_by_the_champion_of_the_nightly_model():
    """The trigger watches the model `nightly` promotes, and its templated parameters, rendered
    from a real champion event, are parameters the serving flow accepts."""
    import jinja2
    from prefect.cli.deploy._triggers import DeploymentTriggerAdapter
    from prefect.events.schemas.events import Resource
    from prefect.flows import load_flow_from_entrypoint

    from tasks.helpers.champion import CHAMPION_MOVED, model_resource_id

    refresh = next(d for d in DEPLOYMENTS if d["entrypoint"] == REFRESH_SERVING)
    nightly = next(d for d in DEPLOYMENTS if d["name"] == "nightly")
    name = validate_params(nightly["parameters"]["params"]).registry.registered_model_name
    assert refresh["parameters"]["registered_model_name"] == name
    [spec] = refresh["triggers"]
    trigger = DeploymentTriggerAdapter.validate_python(dict(spec))  # as `prefect deploy` reads it
    assert trigger.expect == {CHAMPION_MOVED} and trigger.posture == "Reactive" and trigger.enabled
    announced = _announced_payload(name)
    assert announced["resource"]["prefect.resource.id"] == model_resource_id(name)
    assert trigger.match.matches(Resource.model_validate(announced["resource"]))
    other = {**announced["resource"], "prefect.resource.id": model_resource_id("simpo-smoke")}
    assert not trigger.match.matches(Resource.model_validate(other))

    rendered = {
        key: jinja2.Template(value).render(event={"payload": announced["payload"]})
        for key, value in trigger.parameters.items()
    }
    assert rendered == {"version": "7"}
    flow = load_flow_from_entrypoint(str(PREFECT_FILE.parents[1] / REFRESH_SERVING))
    validated = flow.validate_parameters({**refresh["parameters"], **rendered})
    assert validated["version"] == "7" and validated["serving_dir"] == "serving"


def test_the_lateness_window_covers_the_flow_timeout_and_ends_before_the_next_night():
    import flows.retrain as retrain
    from flows.automations import LATE_AFTER

    assert retrain.simpo_retrain.timeout_seconds < LATE_AFTER.total_seconds() < 24 * 3600


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

    import flows.data_steps as data_steps
    import flows.model_steps as model_steps
    import flows.retrain as retrain
    import flows.tracked_run as tracked_run

    # The flow's steps: its own module's tasks and those of the steps it composes.
    values = [value for module in (retrain, tracked_run, data_steps, model_steps) for value in vars(module).values()]
    steps = {value.name: value.timeout_seconds for value in values if isinstance(value, Task)}
    path = {name: steps[name] for name in ONE_SOURCE_PATH}
    assert all(path.values()), path
    flow_timeout = retrain.simpo_retrain.timeout_seconds
    assert sum(path.values()) < flow_timeout < 24 * 3600, (sum(path.values()) / 3600, flow_timeout / 3600)
    assert all(timeout for timeout in steps.values()), "every task needs a timeout"
