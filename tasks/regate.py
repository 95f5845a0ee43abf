"""Tasks of a regate: a registered version of an unchanged training is gated again, not retrained."""

import json
import tempfile
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task

from tasks.helpers.retry import IO_TASK, tracking_errors
from tasks.helpers.tracking import get_client
from tasks.registry import EVAL_TAG, HELDOUT_ARTIFACT


@task(name="recorded-heldout", timeout_seconds=600, **IO_TASK)
def recorded_heldout_task(name: str, version: str, eval_identity: str, tracking_uri: str) -> dict[str, Any] | None:
    """The held-out result `version` was registered with, when it was measured under the same
    evaluation settings (`eval_identity`); None when it must be measured again."""
    from mlflow.exceptions import MlflowException

    logger = get_run_logger()
    with tracking_errors(tracking_uri, "reading the recorded held-out result"):
        client = get_client(tracking_uri)
        found = client.get_model_version(name, version)
        if found.tags.get(EVAL_TAG) != eval_identity or not found.run_id:
            logger.info("version %s: held-out result measured under other evaluation settings; evaluating", version)
            return None
        try:
            with tempfile.TemporaryDirectory() as folder:
                path = client.download_artifacts(found.run_id, HELDOUT_ARTIFACT, folder)
                heldout = json.loads(Path(path).read_text())
        except (MlflowException, OSError, ValueError) as error:
            logger.warning("version %s: recorded held-out result unreadable (%s); evaluating", version, error)
            return None
    logger.info("version %s: reusing the held-out result of run %s", version, found.run_id)
    return heldout


@task(name="fetch-version-model", timeout_seconds=3600, **IO_TASK)
def version_model_task(name: str, version: str, training_folder: Path, tracking_uri: str) -> str:
    """The model folder of `version`: the finished training in `training_folder` (this machine
    trained it), else the registered copy downloaded from the registry."""
    from simpo_core.train.training_folder import finished_training
    from tasks.promotion import download_version_model

    done = finished_training(training_folder)
    if done is not None:
        get_run_logger().info("version %s: evaluating the finished training in %s", version, done.model_dir)
        return str(done.model_dir)
    with tracking_errors(tracking_uri, "downloading the registered model"):
        found = get_client(tracking_uri).get_model_version(name, version)
        model_dir, _ = download_version_model(found, tracking_uri)
    return str(model_dir)
