"""The `stage-champion` task: put the current champion where the model server reads it.

One folder per registered model under the serving folder:

    <serving_dir>/<name>/v<version>/    the model as the registry holds it
    <serving_dir>/<name>/current        symlink to the champion's folder (`mlflow models serve -m` it)
    <serving_dir>/<name>/current.json   which version, its MLflow run, when it was staged

A version is downloaded beside its final place and renamed into it, and `current` is replaced
by renaming a new link over it, so a server that reloads at any moment reads a whole model.
The previous champion stays staged (a rollback swaps back without a download); older
versions are removed, since each is a full copy of the weights.
"""

import json
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task

from simpo_core.errors import ConfigError
from tasks.helpers.champion import current_champion
from tasks.helpers.retry import IO_TASK, tracking_errors
from tasks.helpers.tracking import get_client, process_mlflow_uri

CURRENT = "current"


@task(name="stage-champion", timeout_seconds=3600, **IO_TASK)
def stage_champion_task(
    name: str, serving_dir: str, tracking_uri: str, expected_version: str | None = None
) -> dict[str, Any]:
    """Stage the version that holds `champion` now and point `current` at it.

    `expected_version` is the version the triggering event named. The alias is the truth:
    when it has moved again since (a quick rollback), the newer champion is staged and the
    run that event started will stage it again, harmlessly.
    """
    logger = get_run_logger()
    with tracking_errors(tracking_uri, "staging the champion"):
        champion = current_champion(get_client(tracking_uri), name)
        if champion is None:
            raise ConfigError(f"{name!r} has no champion to serve; promote or `simpo rollback --to` a version first")
        version = str(champion.version)
        if expected_version and str(expected_version) != version:
            logger.warning(
                "champion of %s moved on to v%s since v%s was announced; staging v%s",
                name,
                version,
                expected_version,
                version,
            )
        folder = Path(serving_dir) / name
        target = folder / f"v{version}"
        if not target.is_dir():
            _download(champion.source, tracking_uri, target)
    previous = point_current(folder, target)
    record = {
        "name": name,
        "version": version,
        "run_id": champion.run_id,
        "model_uri": f"models:/{name}/{version}",
        "path": str(target.resolve()),
        "previous": previous,
        "announced": expected_version,  # the version the triggering event named, if any
        "staged_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    _write_atomically(folder / f"{CURRENT}.json", json.dumps(record, indent=2))
    _prune(folder, keep={target.name, previous})
    logger.info("serving %s v%s from %s", name, version, folder / CURRENT)
    return record


def point_current(folder: Path, target: Path) -> str | None:
    """Point `folder/current` at `target` in one rename; the folder name it pointed at before."""
    link = folder / CURRENT
    previous = os.readlink(link) if link.is_symlink() else None
    staging_link = folder / f".{CURRENT}.{os.getpid()}"
    staging_link.unlink(missing_ok=True)
    staging_link.symlink_to(target.name, target_is_directory=True)  # relative: the folder can move
    os.replace(staging_link, link)
    return previous


def _download(source: str, tracking_uri: str, target: Path) -> None:
    """Download a model version's files into `target`, whole or not at all."""
    import mlflow

    # A `models:/` source resolves through the process-wide registry URI, not `tracking_uri`.
    partial = target.with_name(f".{target.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)  # what an interrupted attempt left
    partial.mkdir(parents=True)
    with process_mlflow_uri(tracking_uri):
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=source, tracking_uri=tracking_uri, dst_path=str(partial)
        )
    os.replace(local, target)
    shutil.rmtree(partial, ignore_errors=True)


def _write_atomically(path: Path, text: str) -> None:
    staging = path.with_name(f".{path.name}.{os.getpid()}")
    staging.write_text(text)
    os.replace(staging, path)


def _prune(folder: Path, keep: set[str | None]) -> None:
    """Remove staged versions other than the current and the previous champion."""
    for staged in folder.glob("v*"):
        if staged.is_dir() and not staged.is_symlink() and staged.name not in keep:
            shutil.rmtree(staged, ignore_errors=True)
