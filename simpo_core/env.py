"""Process hygiene: offline, quiet and with state under the working directory.

Called by the CLI and the flow at start-up, never at import. Every variable is set only
when the user has not set it, so a user with hub access or a tracking server keeps theirs.
"""

import os
from pathlib import Path

# MLflow honours only the lowercase string "true" for its telemetry switch.
OFFLINE_DEFAULTS = {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "DO_NOT_TRACK": "true",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
    "TOKENIZERS_PARALLELISM": "false",
}

STATE_DIR_NAME = ".simpo"


def state_dir(base: Path | None = None) -> Path:
    """The folder under the working directory that holds the project's local state."""
    return (base or Path.cwd()) / STATE_DIR_NAME


def apply_process_defaults(base: Path | None = None) -> dict[str, str]:
    """Set the offline/quiet defaults and local state folders the user has not set.

    Args:
        base: folder that holds local state; the working directory by default.

    Returns:
        The variables this call set (name -> value), for logging.
    """
    wanted = dict(OFFLINE_DEFAULTS)
    # Prefect keeps its ephemeral database under PREFECT_HOME (~/.prefect by default);
    # keep it beside the user's work instead of in their home.
    wanted["PREFECT_HOME"] = str(state_dir(base) / "prefect")
    applied = {}
    for name, value in wanted.items():
        if name not in os.environ:
            os.environ[name] = value
            applied[name] = value
    if "PREFECT_HOME" in applied:
        # Prefect creates its home without parents; make the folder for it.
        Path(applied["PREFECT_HOME"]).mkdir(parents=True, exist_ok=True)
    return applied
