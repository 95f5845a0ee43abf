"""`simpo deploy`: register the deployments of deployments/prefect.yaml with a Prefect server,
then create or update the nightly run's automations (flows/automations.py)."""

import argparse
import os
import subprocess
import sys
from pathlib import Path

from simpo_core.errors import ConfigError

HELP = "register the deployments of deployments/prefect.yaml and the nightly run's automations"
PROJECT_ROOT = Path(__file__).resolve().parents[2]
PREFECT_FILE = PROJECT_ROOT / "deployments" / "prefect.yaml"
WORK_POOL = "simpo-process"
NIGHTLY = "nightly"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--name", help="deploy only this deployment (nightly, smoke or refresh-serving); all by default"
    )


def main(args: argparse.Namespace) -> int:
    if not os.environ.get("PREFECT_API_URL"):
        raise ConfigError(
            "simpo deploy needs a Prefect server: run `prefect server start --host 127.0.0.1` and "
            "`export PREFECT_API_URL=http://127.0.0.1:4200/api` (or use `simpo serve`, which needs no work pool)"
        )
    with_automations = args.name in (None, NIGHTLY)
    if with_automations:
        check_alert_block(nightly_alert_block())  # before anything is registered
    env = {**os.environ, "SIMPO_PROJECT_DIR": os.environ.get("SIMPO_PROJECT_DIR", str(PROJECT_ROOT))}
    prefect = [sys.executable, "-m", "prefect", "--no-prompt"]
    pool = subprocess.run([*prefect, "work-pool", "inspect", WORK_POOL], env=env, capture_output=True, text=True)
    if pool.returncode != 0:
        _run([*prefect, "work-pool", "create", WORK_POOL, "--type", "process"], env)
    target = ["--name", args.name] if args.name else ["--all"]
    _run([*prefect, "deploy", "--prefect-file", str(PREFECT_FILE), *target], env)
    if with_automations:
        deploy_automations()
    print(f"deployed; start a worker with: prefect worker start --pool {WORK_POOL}", file=sys.stderr)
    return 0


def deploy_automations(prefect_file: Path = PREFECT_FILE) -> None:
    """The nightly run's crash and lateness automations, notifying its `alerts.block`."""
    from flows.automations import automation_names, ensure_automations

    block = nightly_alert_block(prefect_file)
    check_alert_block(block)
    ensure_automations(f"simpo-retrain/{NIGHTLY}", block)
    where = f"notify {block}" if block else "record to the event feed only (set alerts.block to be notified)"
    print(f"automations {', '.join(automation_names())}: {where}", file=sys.stderr)


def nightly_alert_block(prefect_file: Path = PREFECT_FILE) -> str | None:
    """The `alerts.block` parameter of the nightly deployment, as prefect.yaml sets it."""
    import yaml

    deployments = yaml.safe_load(prefect_file.read_text())["deployments"]
    nightly = next(d for d in deployments if d["name"] == NIGHTLY)
    return (((nightly.get("parameters") or {}).get("params") or {}).get("alerts") or {}).get("block")


def check_alert_block(block: str | None) -> None:
    """Refuse an `alerts.block` that does not load: the automations could not notify it."""
    if not block:
        return
    from flows.alerts import load_block

    try:
        load_block(block)
    except (ValueError, TypeError) as error:  # no such block, or not a notification block
        raise ConfigError(
            f"alerts.block {block!r} of the nightly deployment does not load ({error}); create it "
            "(`prefect block create`, or `.save(name)` in Python) and run simpo deploy again"
        ) from error


def _run(command: list[str], env: dict[str, str]) -> None:
    result = subprocess.run(command, env=env, cwd=PROJECT_ROOT)
    if result.returncode != 0:
        raise ConfigError(f"`{' '.join(command[2:])}` failed (exit {result.returncode}); see the output above")
