"""`simpo deploy`: register the deployments of deployments/prefect.yaml with a Prefect server."""

import argparse
import os
import subprocess
import sys
from pathlib import Path

from simpo_core.errors import ConfigError

HELP = "register the scheduled deployments of deployments/prefect.yaml with a Prefect server"
PROJECT_ROOT = Path(__file__).resolve().parents[2]
PREFECT_FILE = PROJECT_ROOT / "deployments" / "prefect.yaml"
WORK_POOL = "simpo-process"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--name", help="deploy only this deployment (nightly or smoke); all by default")


def main(args: argparse.Namespace) -> int:
    if not os.environ.get("PREFECT_API_URL"):
        raise ConfigError(
            "simpo deploy needs a Prefect server: run `prefect server start --host 127.0.0.1` and "
            "`export PREFECT_API_URL=http://127.0.0.1:4200/api` (or use `simpo serve`, which needs no work pool)"
        )
    env = {**os.environ, "SIMPO_PROJECT_DIR": os.environ.get("SIMPO_PROJECT_DIR", str(PROJECT_ROOT))}
    prefect = [sys.executable, "-m", "prefect", "--no-prompt"]
    pool = subprocess.run([*prefect, "work-pool", "inspect", WORK_POOL], env=env, capture_output=True, text=True)
    if pool.returncode != 0:
        _run([*prefect, "work-pool", "create", WORK_POOL, "--type", "process"], env)
    target = ["--name", args.name] if args.name else ["--all"]
    _run([*prefect, "deploy", "--prefect-file", str(PREFECT_FILE), *target], env)
    print(f"deployed; start a worker with: prefect worker start --pool {WORK_POOL}", file=sys.stderr)
    return 0


def _run(command: list[str], env: dict[str, str]) -> None:
    result = subprocess.run(command, env=env, cwd=PROJECT_ROOT)
    if result.returncode != 0:
        raise ConfigError(f"`{' '.join(command[2:])}` failed (exit {result.returncode}); see the output above")
