"""The training job file's groups and overrides (`simpo train --config JOB.yaml --set ...`).

A job file names its SimPOConfig group `train:`, as the flow's parameters do, so one block of
settings reads the same in `simpo run --config` and `simpo train --config`, and `--set
train.beta=3` addresses it the same way. Its `preset: auto` (the default) is the starting
model's own preset, as in the flow. Files written before the group had that name say
`simpo:`; they still train exactly as before (no automatic preset), with a warning to rename.
"""

import logging
from pathlib import Path
from typing import Any

from simpo_core.errors import ConfigError
from simpo_core.settings import apply_overrides, read_yaml_mapping
from simpo_core.train.config import SimPOConfig
from simpo_core.train.presets import NONE

logger = logging.getLogger(__name__)

TRAIN_GROUP = "train"
LEGACY_GROUP = "simpo"  # the group's former name, read with a deprecation warning


def read_job_values(path: Path, overrides: list[str] | None = None) -> dict[str, Any]:
    """The job file's mapping with its group named `train` and `key=value` overrides applied
    (dotted paths: `train.beta=3`, `model=/path`), not yet checked.

    Raises:
        ConfigError: unreadable file, both group names at once, or a malformed override.
    """
    values = rename_legacy_group(read_yaml_mapping(path), path)
    return apply_overrides(values, overrides)


def rename_legacy_group(values: dict[str, Any], path: Path) -> dict[str, Any]:
    """`values` with a `simpo:` group renamed `train:` (warned once); it keeps its old meaning,
    the library defaults under the given fields unless it names a preset.

    Raises:
        ConfigError: the file has both groups (which one it means is a guess).
    """
    if LEGACY_GROUP not in values:
        return values
    if TRAIN_GROUP in values:
        raise ConfigError(f"{path}: both 'train:' and 'simpo:' are set; keep 'train:' only (its fields are the same)")
    logger.warning("%s: the group 'simpo:' is now named 'train:' (as in simpo run); rename it", path)
    legacy = values[LEGACY_GROUP] or {}
    if isinstance(legacy, dict):
        legacy = {"preset": NONE, **legacy}
    return {**{key: value for key, value in values.items() if key != LEGACY_GROUP}, TRAIN_GROUP: legacy}


def job_config(values: dict[str, Any], path: Path) -> SimPOConfig:
    """The SimPOConfig of a job's `train` group, its `preset: auto` resolved for the job's model.

    Raises:
        ConfigError: the group is not a mapping, or holds an unknown or bad value (named).
    """
    group = values.get(TRAIN_GROUP) or {}
    if not isinstance(group, dict):
        raise ConfigError(f"{path}: 'train' must be a mapping of SimPOConfig fields, got {group!r:.60}")
    return SimPOConfig.for_model(group, str(values["model"]), source=f"{path} (train)")
