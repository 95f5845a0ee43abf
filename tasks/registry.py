"""The `register-model` task: log the trained model and register a `challenger` version."""

from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from tasks.helpers.retry import IO_TASK, tracking_errors
from tasks.helpers.tracking import Tracking, process_mlflow_uri
from tasks.identity import IDENTITY_TAG

SERVING_CODE = Path(__file__).parent / "helpers" / "serving_model.py"
PROMPT_CODE = Path(__file__).parents[1] / "simpo_core" / "train" / "prompt_format.py"  # copied beside it
BASE_MODEL_ARTIFACT = "base_model"  # the base folder logged beside an adapter-only policy
SERVING_EXAMPLE = [{"prompt": "List some fruit words."}]
CHALLENGER = "challenger"
MODEL_ARTIFACT = "model"
TAGGED_METRICS = ("reward_accuracy", "length_controlled_accuracy", "reward_margin")
HELDOUT_ARTIFACT = "evaluation/heldout.json"  # the held-out result the version was gated on
EVAL_TAG = "heldout.eval_identity"  # the evaluation settings that result was measured under


def serving_requirements() -> list[str]:
    """Pinned requirements of the logged model, read from the running environment."""
    from importlib.metadata import version

    return [
        f"{name}=={version(name)}" for name in ("mlflow", "torch", "transformers", "safetensors", "peft", "accelerate")
    ]


def find_version_of_run(client, name: str, run_id: str):
    """The model version already registered from this run, if any (retry safety)."""
    versions = client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
    return max(versions, key=lambda v: int(v.version)) if versions else None


@task(name="register-model", timeout_seconds=1800, **IO_TASK)
def register_model_task(
    model_dir: str,
    name: str,
    tracking: Tracking,
    heldout: dict[str, Any],
    base_model: str = "",
    identity: str = "",
    eval_identity: str = "",
) -> str:
    """Log the model (pyfunc over the saved folder), register it, alias it `challenger`.

    The held-out result goes into the run (`evaluation/heldout.json`) and the evaluation
    settings it was measured under onto the version, so a rerun that regates this version
    under the same evaluation settings reuses it instead of evaluating again.

    Idempotent: a retry of this task, or a rerun of the flow run, finds the version
    registered from the same MLflow run instead of creating a second one.
    """
    run_id = tracking.run_id
    with tracking_errors(tracking.uri, "registering the model"):
        version = register_version(model_dir, name, tracking, heldout["trained"], base_model, identity)
        client = tracking.client()
        client.log_dict(run_id, heldout, HELDOUT_ARTIFACT)
        if eval_identity:
            client.set_model_version_tag(name, version, EVAL_TAG, eval_identity)
    create_markdown_artifact(
        f"# Registered\n\n`{name}` version **{version}**, alias `{CHALLENGER}`, "
        f"from MLflow run `{run_id}` (starting model `{base_model}`).\n",
        key="registered-model",
        description="model registry",
    )
    return version


def register_version(
    model_dir: str,
    name: str,
    tracking: Tracking,
    trained: dict[str, Any],
    base_model: str,
    identity: str = "",
) -> str:
    """Register (or find) this run's version, alias it `challenger`, tag its metrics and lineage."""
    logger = get_run_logger()
    client, run_id = tracking.client(), tracking.run_id
    existing = find_version_of_run(client, name, run_id)
    if existing is not None:
        logger.info("version %s of %r already registered from run %s", existing.version, name, run_id)
        version = str(existing.version)
    else:
        # A try that failed after logging the model left it in the run: register that one.
        model_uri, model_id = logged_policy_of_run(client, run_id) or log_policy(model_dir, tracking)
        _ensure_registered(client, name)
        # MLflow's SQL registry looks a `models:/m-...` source up with a client on the
        # process-wide tracking URI, not this client's.
        with process_mlflow_uri(tracking.uri):
            version = str(
                client.create_model_version(name=name, source=model_uri, run_id=run_id, model_id=model_id).version
            )
        logger.info("registered %r version %s", name, version)
    client.set_registered_model_alias(name, CHALLENGER, version)
    tags = {f"heldout.{key}": "n/a" if trained.get(key) is None else f"{trained[key]:.4f}" for key in TAGGED_METRICS}
    tags.update(base_model=base_model, lora_adapter=str((Path(model_dir) / "adapter").exists()).lower())
    if identity:
        tags[IDENTITY_TAG] = identity  # lets a rerun of the same training skip (tasks.identity)
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
    return version


def log_policy(model_dir: str, tracking: Tracking) -> tuple[str, str]:
    """Log the saved model folder as a pyfunc model of the run, with its signature (text out,
    generation params) and an input example; return (uri, model id).

    An adapter-only folder is logged with its base model (artifact `base_model`) when that
    base is a local folder, so the served and re-evaluated champion does not depend on it.

    The model is created as the run's output here rather than by `log_model` inside the run:
    there MLflow reads the whole history of every metric of the run, one request each (about
    150 after a training), to link them to the model, which costs a server with basic auth a
    password check each (0.2 s on 2 cores). The held-out metrics the gate reads are on the
    run and the registered version's tags.
    """
    import mlflow
    from mlflow.entities import LoggedModelOutput

    from simpo_core.models import adapter_base, is_adapter_folder

    artifacts = {"model_dir": model_dir}
    if is_adapter_folder(model_dir) and Path(adapter_base(model_dir)).is_dir():
        artifacts[BASE_MODEL_ARTIFACT] = adapter_base(model_dir)
    client = tracking.client()
    experiment_id = client.get_run(tracking.run_id).info.experiment_id
    with process_mlflow_uri(tracking.uri):
        model = mlflow.initialize_logged_model(
            name=MODEL_ARTIFACT, source_run_id=tracking.run_id, experiment_id=experiment_id
        )
        info = mlflow.pyfunc.log_model(
            name=MODEL_ARTIFACT,
            model_id=model.model_id,
            python_model=str(SERVING_CODE),
            artifacts=artifacts,
            code_paths=[str(PROMPT_CODE)],
            signature=serving_signature(),
            input_example=(SERVING_EXAMPLE, {"max_new_tokens": 8}),
            pip_requirements=serving_requirements(),
        )
    client.log_outputs(tracking.run_id, models=[LoggedModelOutput(model.model_id, step=0)])
    return info.model_uri, info.model_id


def serving_signature():
    """Output: the reply; params with the served model's defaults (MLflow checks their types).

    No input schema: the model takes prompt strings (`{"inputs": ["..."]}`, `predict(["..."])`)
    as well as rows with `prompt` or `messages`, and no MLflow schema holds both. A schema
    with `prompt` / `messages` columns drops a list of strings before the model sees it (it
    arrives as an unnamed column), so the model reads and checks its input itself
    (`serving_model._rows`); the input example shows the row form.
    """
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ColSpec, ParamSchema, ParamSpec, Schema

    from simpo_core.train.prompt_format import SERVING_DEFAULTS

    kinds = {"max_new_tokens": "long", "temperature": "double", "top_p": "double", "do_sample": "boolean"}
    return ModelSignature(
        inputs=None,
        outputs=Schema([ColSpec("string", "reply")]),
        params=ParamSchema([ParamSpec(name, kinds[name], default) for name, default in SERVING_DEFAULTS.items()]),
    )


def logged_policy_of_run(client, run_id: str) -> tuple[str, str] | None:
    """(uri, model id) of the policy an earlier try of this run logged, or None."""
    experiment_id = client.get_run(run_id).info.experiment_id
    logged = client.search_logged_models(
        [experiment_id], filter_string=f"source_run_id = '{run_id}' AND name = '{MODEL_ARTIFACT}'"
    )
    ready = [model for model in logged if str(model.status).endswith("READY")]
    if not ready:
        return None
    newest = max(ready, key=lambda model: model.creation_timestamp)
    get_run_logger().info("reusing the model %s logged by an earlier try of run %s", newest.model_id, run_id)
    return f"models:/{newest.model_id}", newest.model_id


def _ensure_registered(client, name: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(name, description="SimPO policy trained by the simpo-retrain flow")
    except MlflowException as error:
        if "already exists" not in str(error).lower() and "RESOURCE_ALREADY_EXISTS" not in str(error):
            raise
