"""Start a training job in several processes, on one machine or several, with torchrun.

`simpo train` and the flow's `train-simpo` task call `launch` when the job asks for more
than one process and they are not already running under torchrun. Each process runs the
worker (`python -m simpo_core.train.worker`); a process that fails writes what went wrong
to `<output_dir>/errors/rank-<R>.json`, and `launch` turns the first of those into one
error of the same kind (a data error stays a data error, which is not retried).

On several machines (`nnodes` > 1) every machine runs the same command; they meet at the
rendezvous endpoint given by `PET_RDZV_ENDPOINT=host:port` (as torchrun reads it), or by
`MASTER_ADDR` and `MASTER_PORT`.

The job runs in its own process group and dies with the launcher: if the launcher is killed,
the kernel stops torchrun and each process stops the whole job once it sees the launcher gone;
if `launch` returns or raises, it stops the job first (`simpo_core.train.watchdog`).
"""

import hashlib
import json
import logging
import os
import shutil
import subprocess
import traceback
from pathlib import Path

from simpo_core import threads
from simpo_core.errors import ConfigError, SimpoError
from simpo_core.train import watchdog
from simpo_core.train.distributed import torchrun_command
from simpo_core.train.training_folder import TrainResult, finished_training
from simpo_core.train.worker import TrainJob

logger = logging.getLogger(__name__)

ERRORS_DIR = "errors"
JOB_FILE = "train-job.yaml"


def under_torchrun() -> bool:
    """This process was started by torchrun (it is one of the workers)."""
    return "TORCHELASTIC_RUN_ID" in os.environ or int(os.environ.get("WORLD_SIZE", "1")) > 1


def needs_launch(job: TrainJob) -> bool:
    """The job asks for more than one process and nobody has started them yet."""
    return job.config.num_processes * job.config.nnodes > 1 and not under_torchrun()


def launch(job: TrainJob, resume: bool = False) -> TrainResult:
    """Train `job` in `num_processes` processes on each of `nnodes` machines; wait for them.

    Raises:
        SimpoError: the kind a failed process raised (data, config, divergence), naming its rank.
        RuntimeError: a process failed otherwise (killed, out of memory, a bug).

    The processes do not outlive this one: killed, it takes them with it; interrupted (an
    exception while waiting), it stops them before the exception goes on.
    """
    out_dir = Path(job.config.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(out_dir / ERRORS_DIR, ignore_errors=True)
    job_file = job.write(out_dir / JOB_FILE)
    worker = ["-m", "simpo_core.train.worker", "--config", str(job_file), *(["--resume"] if resume else [])]
    command = torchrun_command(
        worker, job.config.num_processes, job.config.nnodes, **rendezvous(job.config.nnodes, out_dir)
    )
    logger.info(
        "training in %d process(es) on %d machine(s): %s",
        job.config.num_processes,
        job.config.nnodes,
        " ".join(command),
    )
    job_process = subprocess.Popen(
        command,
        env={
            **os.environ,
            **threads.torchrun_environment(job.config.num_threads, job.config.num_processes),
            **watchdog.launcher_environment(),
        },
        start_new_session=True,  # its own group: stopped as one, out of reach of signals meant for ours
        preexec_fn=watchdog.die_with_parent(),
    )
    try:
        returncode = watchdog.wait(job_process)
    finally:  # returning or raising (Ctrl-C, a task timeout), the launcher leaves no process behind
        watchdog.stop_job(job_process)
    if returncode != 0:
        raise failure(out_dir, returncode)
    result = finished_training(out_dir)
    if result is None:
        raise RuntimeError(f"torchrun finished but {out_dir} holds no finished training; see the output above")
    return result


def rendezvous(nnodes: int, out_dir: Path) -> dict[str, str]:
    """torchrun's rendezvous options for `nnodes` machines (none for one).

    Raises:
        ConfigError: several machines but no endpoint in the environment.
    """
    if nnodes == 1:
        return {}
    endpoint = os.environ.get("PET_RDZV_ENDPOINT")
    if not endpoint and os.environ.get("MASTER_ADDR") and os.environ.get("MASTER_PORT"):
        endpoint = f"{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']}"
    if not endpoint:
        raise ConfigError(
            f"train.nnodes is {nnodes}: set PET_RDZV_ENDPOINT=host:port (a free port on the first machine, "
            "reachable from the others) on every machine and run the same command on each"
        )
    # The same on every machine that runs this job: they share output_dir.
    run_id = os.environ.get("PET_RDZV_ID") or hashlib.sha256(str(out_dir.resolve()).encode()).hexdigest()[:16]
    return {"rdzv_endpoint": endpoint, "rdzv_id": run_id}


def record_failure(out_dir: Path, rank: int, error: BaseException) -> None:
    """What a worker writes before exiting with an error (read back by `launch`)."""
    folder = Path(out_dir) / ERRORS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    report = {
        "rank": rank,
        "type": type(error).__name__,
        "message": str(error),
        "user_error": isinstance(error, SimpoError),
        "traceback": "".join(traceback.format_exception(error))[-4000:],
    }
    (folder / f"rank-{rank}.json").write_text(json.dumps(report, indent=1))


def failure(out_dir: Path, returncode: int) -> Exception:
    """One error for a failed torchrun job: the lowest rank's recorded error, of its own kind."""
    reports = sorted(
        (json.loads(path.read_text()) for path in (Path(out_dir) / ERRORS_DIR).glob("rank-*.json")),
        key=lambda report: report["rank"],
    )
    if not reports:
        return RuntimeError(
            f"torchrun training exited with {returncode} and no process recorded an error "
            "(killed, or out of memory?); see the output above"
        )
    first = reports[0]
    message = f"rank {first['rank']} of the training failed: {first['message']}"
    kind = _user_errors().get(first["type"]) if first["user_error"] else None
    if kind is not None:
        return kind(message)
    return RuntimeError(f"{message} ({first['type']}); traceback:\n{first['traceback']}")


def _user_errors() -> dict[str, type[SimpoError]]:
    from simpo_core.train.trainer import TrainingDivergedError  # noqa: F401 (registers the subclass)

    found, todo = {}, [SimpoError]
    while todo:
        kind = todo.pop()
        found[kind.__name__] = kind
        todo.extend(kind.__subclasses__())
    return found
