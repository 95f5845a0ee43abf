"""`data.replay`: every training records the rows it used; a later run replays the champion's record.

The record (`simpo_core.data.record`) is one Parquet file logged to the training's MLflow
run (`training-rows/rows.parquet`) with its SHA-256 as a run tag, so any worker that can
reach the tracking server replays exactly what the champion trained on.
"""

import tempfile
from pathlib import Path

from prefect import get_run_logger, task

from simpo_core.data.mix import SourceSpec
from simpo_core.data.record import check_row_record, write_row_record
from simpo_core.data.validation import ValidationResult
from simpo_core.errors import DataError
from tasks.helpers.retry import IO_TASK, tracking_errors
from tasks.helpers.tracking import Tracking, get_client

ROWS_ARTIFACT_DIR = "training-rows"
ROWS_FILE = "rows.parquet"
ROWS_DIGEST_TAG = "training.rows_sha256"
REPLAY_DIR = "replay"  # under output_dir: verified copies of replayed records, by digest


@task(name="record-training-rows", timeout_seconds=3600, **IO_TASK)
def record_training_rows_task(validated: ValidationResult, out_dir: Path, tracking: Tracking) -> str:
    """Write and log the validated rows this training used (without the rows it replayed); return
    the record's SHA-256."""
    mixed = (validated.summary.get("mix") or {}).get("sources") or {}
    replayed = [name for name, counts in mixed.items() if counts.get("replay")]
    path = Path(out_dir) / ROWS_FILE
    digest = write_row_record(validated.valid_path, path, replayed)
    with tracking_errors(tracking.uri, "recording the training rows"):
        client = tracking.client()
        client.log_artifact(tracking.run_id, str(path), ROWS_ARTIFACT_DIR)
        client.set_tag(tracking.run_id, ROWS_DIGEST_TAG, digest)
    get_run_logger().info("recorded the training rows (sha256 %s) in the run", digest[:12])
    return digest


@task(name="replay-sources", timeout_seconds=1800, **IO_TASK)
def replay_sources_task(name: str, tracking_uri: str, fraction: float, output_dir: str) -> list[SourceSpec]:
    """The champion's recorded training rows as one source to mix in at `fraction`; none when
    there is no champion.

    Raises:
        DataError: the champion has no record, or its record is missing or does not match its digest.
    """
    from tasks.helpers.champion import current_champion

    logger = get_run_logger()
    with tracking_errors(tracking_uri, "reading the champion's training rows"):
        client = get_client(tracking_uri)
        champion = current_champion(client, name)
        if champion is None or not champion.run_id:
            logger.info("data.replay: %r has no champion (with a run) yet; nothing to replay", name)
            return []
        what = f"data.replay: champion v{champion.version} of {name!r} (MLflow run {champion.run_id})"
        digest = client.get_run(champion.run_id).data.tags.get(ROWS_DIGEST_TAG)
        if not digest:
            raise DataError(
                f"{what} has no record of the rows it trained on (tag {ROWS_DIGEST_TAG}; it was trained before "
                "records were kept): set data.replay=0 for this run, or retrain the champion"
            )
        local = Path(output_dir).resolve() / REPLAY_DIR / digest[:16] / ROWS_FILE
        if not local.is_file():
            local = _download_record(client, champion.run_id, local, what)
    check_row_record(local, digest, what)
    logger.info("%s: replaying its recorded rows at fraction %g", what, fraction)
    return [SourceSpec(source=str(local), name=f"replay-v{champion.version}", fraction=fraction, replay=True)]


def _download_record(client, run_id: str, local: Path, what: str) -> Path:
    from mlflow.exceptions import MlflowException

    local.parent.mkdir(parents=True, exist_ok=True)
    try:
        with tempfile.TemporaryDirectory(dir=local.parent) as folder:
            found = client.download_artifacts(run_id, f"{ROWS_ARTIFACT_DIR}/{ROWS_FILE}", folder)
            Path(found).replace(local)  # whole or not at all: the file is checked by digest anyway
    except (MlflowException, OSError) as error:
        raise DataError(
            f"{what}: its record of training rows {ROWS_ARTIFACT_DIR}/{ROWS_FILE} is missing: {error}"
        ) from None
    return local
