"""The stages of a sweep and their trials: each stage starts from the best settings so far."""

import itertools
import json
from dataclasses import dataclass
from typing import Any

from simpo_core.errors import ConfigError
from simpo_core.sweep.settings import (
    PROTOCOL_BETAS,
    PROTOCOL_GAMMA_BETA_RATIOS,
    PROTOCOL_LR_FACTORS,
    SweepSettings,
)
from simpo_core.train.config import SimPOConfig


@dataclass(frozen=True)
class Stage:
    """One round of trials: `combos` are merged onto the best settings of the rounds before."""

    name: str
    combos: list[dict[str, Any]]


def authors_protocol(base: SimPOConfig) -> list[Stage]:
    """The default plan: learning rate first, then γ/β at the best lr, then β (see module docs)."""
    return [
        Stage("learning rate", [{"lr": float(f"{base.lr * factor:.3g}")} for factor in PROTOCOL_LR_FACTORS]),
        Stage("gamma/beta", [{"gamma_beta_ratio": ratio} for ratio in PROTOCOL_GAMMA_BETA_RATIOS]),
        Stage("beta", [{"beta": beta} for beta in PROTOCOL_BETAS]),
    ]


def planned_stages(settings: SweepSettings, base: SimPOConfig) -> list[Stage]:
    """The stages `settings` describe; every trial is checked against `base` at once.

    Raises:
        ConfigError: a value that makes an invalid training config (names the trial and field).
    """
    if settings.grid is not None:
        stages = [Stage("grid", expand_grid(settings.grid))]
    elif settings.trials is not None:
        stages = [Stage("trials", [dict(trial) for trial in settings.trials])]
    elif settings.stages is not None:
        stages = [Stage(f"stage {index + 1}", expand_grid(grid)) for index, grid in enumerate(settings.stages)]
    else:
        stages = authors_protocol(base)
    for stage in stages:
        for combo in stage.combos:
            trial_config(base, combo)
    return stages


def expand_grid(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Every combination, the first name varying slowest: {a: [1, 2], b: [3]} -> [{a:1,b:3}, {a:2,b:3}]."""
    names = list(grid)
    return [dict(zip(names, values)) for values in itertools.product(*(grid[name] for name in names))]


def trial_config(base: SimPOConfig, settings: dict[str, Any]) -> SimPOConfig:
    """`base` with a trial's settings, γ resolved to its absolute value (`gamma_beta_ratio` None).

    A trial that sets `gamma_beta_ratio` (or β while `base` has a ratio) recomputes γ = β × ratio;
    one that sets `gamma` drops the base's ratio. Two trials that train the same thing thus get
    the same config, and the same training identity.

    Raises:
        ConfigError: the combined values are invalid (names the trial and the field).
    """
    return _validated(base, settings).model_copy(update={"gamma_beta_ratio": None})


def typed_settings(base: SimPOConfig, settings: dict[str, Any]) -> dict[str, Any]:
    """The trial's values as the config reads them (YAML's `1e-3` is a string until then)."""
    config = _validated(base, settings)
    return {name: getattr(config, name) for name in settings}


def _validated(base: SimPOConfig, settings: dict[str, Any]) -> SimPOConfig:
    values = base.model_dump()
    if "gamma" in settings:
        values["gamma_beta_ratio"] = None
    ratio = settings.get("gamma_beta_ratio", values["gamma_beta_ratio"])
    if ratio is not None and "gamma" not in settings:
        values.pop("gamma")
    try:
        return SimPOConfig.from_dict({**values, **settings}, source=f"sweep trial {trial_label(settings)}")
    except ConfigError as error:
        raise ConfigError(f"{error} (fix the sweep's values)") from None


def trial_label(settings: dict[str, Any]) -> str:
    """A short readable name, e.g. `lr=0.001,beta=2`."""
    return ",".join(f"{name}={_short(value)}" for name, value in settings.items()) or "base"


def _short(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


@dataclass(frozen=True)
class Trial:
    """One training to run: its stage, the settings it sets and its resolved config."""

    name: str
    stage: str
    settings: dict[str, Any]
    config: SimPOConfig


def stage_trials(stage: Stage, best: dict[str, Any], base: SimPOConfig, done: list[Trial]) -> list[Trial]:
    """The trials of `stage` on top of the best settings so far, leaving out any whose
    resolved config an earlier trial (in `done`) or this stage already trains."""
    seen = {_config_key(trial.config) for trial in done}
    trials = []
    for combo in stage.combos:
        settings = {**best, **combo}
        if "gamma" in combo:
            settings.pop("gamma_beta_ratio", None)
        if "gamma_beta_ratio" in combo:
            settings.pop("gamma", None)
        settings = typed_settings(base, settings)
        config = trial_config(base, settings)
        if _config_key(config) not in seen:
            seen.add(_config_key(config))
            trials.append(Trial(trial_label(settings), stage.name, settings, config))
    return trials


def _config_key(config: SimPOConfig) -> str:
    return json.dumps(config.model_dump(mode="json", exclude={"output_dir"}), sort_keys=True)
