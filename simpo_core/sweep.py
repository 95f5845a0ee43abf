"""Hyper-parameter sweeps: which trials run, and which trial wins.

A sweep is one or more stages. A stage is a grid (every combination of its values) or an
explicit list of trials; each stage starts from the best settings found so far, so
`stages: [{lr: [...]}, {gamma_beta_ratio: [...]}, {beta: [...]}]` tunes the learning rate
first, then γ/β at the best learning rate, then β. With no grid, list or stages given, the
SimPO authors' protocol runs (`authors_protocol`).

The winner is the eligible trial with the best held-out `metric` (length-controlled accuracy
by default); a trial is eligible when it finished, its reward accuracy reaches
`min_reward_accuracy` and its generations did not collapse. Pure logic: the flow runs it.
"""

import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from simpo_core.errors import ConfigError
from simpo_core.gate.identity import IGNORED_TRAINING_FIELDS
from simpo_core.gate.promotion import MIN_DISTINCT_RATE
from simpo_core.settings import StepSettings
from simpo_core.train.config import LAYOUT_FIELDS, SimPOConfig

HyperValue = bool | int | float | str
# SimPOConfig fields a trial may not set: where the training writes, nested groups, the process
# layout, and what leaves the training identity unchanged (two trials would share one folder).
NOT_SWEEPABLE = ("lora", "early_stopping", *LAYOUT_FIELDS)
NOT_SWEEPABLE += IGNORED_TRAINING_FIELDS
SWEEPABLE = tuple(name for name in SimPOConfig.model_fields if name not in NOT_SWEEPABLE)
# The authors' protocol (princeton-nlp/SimPO, "Hyperparameter tuning"): the learning rate matters
# most (they search 3e-7, 5e-7, 1e-6 around 1e-6: here 0.3, 0.5 and 1 × the configured lr, so a
# model with its own preset keeps its scale), then γ/β in [0, 1] from 0.5, then β (2.0, 2.5, 10).
PROTOCOL_LR_FACTORS = (0.3, 0.5, 1.0)
PROTOCOL_GAMMA_BETA_RATIOS = (0.1, 0.5, 0.8)
PROTOCOL_BETAS = (2.0, 2.5, 10.0)
TABLE_METRICS = ("length_controlled_accuracy", "reward_accuracy", "reward_margin", "loss", "length_reward_correlation")


class SweepSettings(StepSettings):
    """What a sweep tries, where the trials run, and how the winner is picked."""

    grid: dict[str, list[HyperValue]] | None = Field(
        None,
        description="one stage: every combination of these training fields, e.g. {lr: [1e-3, 3e-4], beta: [2, 10]}",
    )
    trials: list[dict[str, HyperValue]] | None = Field(
        None, description="one stage: these trials as listed, e.g. [{lr: 1e-3}, {lr: 3e-4, beta: 10}]"
    )
    stages: list[dict[str, list[HyperValue]]] | None = Field(
        None, description="successive grids, each starting from the best settings so far (lr first, then ...)"
    )
    runner: Literal["local", "dask"] = Field(
        "local", description="local: threads in the flow's process; dask: a Dask cluster (dask_address or local)"
    )
    max_concurrency: int | None = Field(
        None,
        ge=1,
        le=256,
        description="trials trained and evaluated at the same time; unset: one per GPU (per train.num_processes "
        "GPUs) with model.device auto, else 1 (simpo_core.devices.trial_placement)",
    )
    dask_address: str | None = Field(
        None, min_length=1, description="Dask scheduler address (tcp://host:8786); none: a local cluster"
    )
    metric: Literal["length_controlled_accuracy", "reward_accuracy"] = Field(
        "length_controlled_accuracy", description="held-out metric of the trained model that picks the winner"
    )
    min_reward_accuracy: float = Field(
        0.5, ge=0, le=1, description="a trial whose held-out reward accuracy is below this cannot win"
    )

    @model_validator(mode="after")
    def _one_plan(self) -> "SweepSettings":
        given = [name for name in ("grid", "trials", "stages") if getattr(self, name) is not None]
        if len(given) > 1:
            raise ValueError(f"set one of sweep.grid, sweep.trials or sweep.stages, not {' and '.join(given)}")
        if self.dask_address is not None and self.runner != "dask":
            raise ValueError("sweep.dask_address needs sweep.runner=dask")
        for index, grid in enumerate([self.grid] if self.grid is not None else self.stages or []):
            where = "sweep.grid" if self.grid is not None else f"sweep.stages[{index}]"
            if not grid:
                raise ValueError(f"{where} is empty: name at least one training field and its values")
            check_names(grid, where)
            empty = [name for name, values in grid.items() if not values]
            if empty:
                raise ValueError(f"{where}.{empty[0]} has no values: give at least one")
        if self.trials is not None:
            if not self.trials:
                raise ValueError("sweep.trials is empty: list at least one trial")
            for index, trial in enumerate(self.trials):
                check_names(trial, f"sweep.trials[{index}]")
        return self


def check_names(settings: dict[str, Any], where: str) -> None:
    """Refuse a name that is not a sweepable training field, and γ given twice."""
    unknown = sorted(set(settings) - set(SWEEPABLE))
    if unknown:
        raise ValueError(
            f"{where}: unknown hyper-parameter {unknown[0]!r}; sweepable are the train fields: {', '.join(SWEEPABLE)}"
        )
    if "gamma" in settings and "gamma_beta_ratio" in settings:
        raise ValueError(f"{where}: set gamma or gamma_beta_ratio, not both (γ = β × gamma_beta_ratio)")


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


@dataclass
class TrialOutcome:
    """What a trial produced: the trained model's held-out block, or the error that stopped it."""

    trial: Trial
    trained: dict[str, Any] | None = None
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # run id, model folder, steps, ...


@dataclass(frozen=True)
class Selection:
    """The winning trial's name (None when no trial qualifies) and why each trial was not chosen."""

    winner: str | None
    reason: str
    disqualified: dict[str, str]


def disqualification(outcome: TrialOutcome, settings: SweepSettings) -> str | None:
    """Why this trial cannot win, or None when it is eligible."""
    if outcome.error is not None:
        return f"failed: {outcome.error}"
    trained = outcome.trained or {}
    if trained.get(settings.metric) is None:
        return (
            f"{settings.metric} is undefined on these held-out pairs (no chosen-shorter or no chosen-longer pairs); "
            "set sweep.metric=reward_accuracy"
        )
    accuracy = trained["reward_accuracy"]
    if accuracy < settings.min_reward_accuracy:
        return f"reward accuracy {accuracy:.3f} < sweep.min_reward_accuracy {settings.min_reward_accuracy:g}"
    generation = trained.get("generation")
    if not generation:
        return "no generation check (eval.generation_samples=0): collapse cannot be ruled out"
    if generation.get("collapsed"):
        return "collapsed: " + ("; ".join(generation.get("collapse_reasons") or []) or "flagged by the evaluation")
    distinct = (generation.get("greedy") or {}).get("distinct_rate")
    if distinct is not None and distinct < MIN_DISTINCT_RATE:
        return f"collapsed: greedy distinct-answer rate {distinct:.2f} < {MIN_DISTINCT_RATE}"
    return None


def select_winner(outcomes: list[TrialOutcome], settings: SweepSettings) -> Selection:
    """The eligible trial with the highest `settings.metric`; ties go to the higher reward
    accuracy, then to the earlier trial."""
    disqualified = {o.trial.name: why for o in outcomes if (why := disqualification(o, settings)) is not None}
    eligible = [(index, o) for index, o in enumerate(outcomes) if o.trial.name not in disqualified]
    if not eligible:
        details = "; ".join(f"{name}: {why}" for name, why in disqualified.items()) or "no trial ran"
        return Selection(None, f"no trial qualifies ({details})", disqualified)
    _, best = max(
        eligible, key=lambda item: (item[1].trained[settings.metric], item[1].trained["reward_accuracy"], -item[0])
    )
    value = best.trained[settings.metric]
    reason = (
        f"{best.trial.name}: best held-out {settings.metric} {value:.3f} of {len(eligible)} eligible trial(s) "
        f"(reward accuracy {best.trained['reward_accuracy']:.3f}, no collapse)"
    )
    return Selection(best.trial.name, reason, disqualified)


def trial_metrics(trained: dict[str, Any] | None) -> dict[str, Any]:
    """The held-out numbers a sweep reports per trial (the full block stays in MLflow)."""
    trained = trained or {}
    generation = trained.get("generation") or {}
    return {
        **{key: trained.get(key) for key in TABLE_METRICS},
        "collapsed": generation.get("collapsed") if generation else None,
        "repetition_rate": generation.get("repetition_rate"),
    }


def trial_summary(outcome: TrialOutcome, selection: Selection) -> dict[str, Any]:
    """A trial as the summary reports it: settings, metrics, verdict, run and training folder."""
    extra = outcome.extra
    return {
        "name": outcome.trial.name,
        "stage": outcome.trial.stage,
        "settings": outcome.trial.settings,
        "metrics": trial_metrics(outcome.trained) if outcome.trained else None,
        "eligible": outcome.trial.name not in selection.disqualified,
        "disqualified": selection.disqualified.get(outcome.trial.name),
        "error": outcome.error,
        "mlflow_run_id": extra.get("mlflow_run_id"),
        "training_identity": extra.get("identity"),
        "model_dir": extra.get("model_dir"),
        "train_steps": extra.get("steps"),
        "reused_training": extra.get("reused"),
    }


def results_table(outcomes: list[TrialOutcome], selection: Selection) -> list[dict[str, Any]]:
    """One row per trial: name, stage, settings, metrics, whether it won and why not. A swept
    hyper-parameter the trial left alone shows the value it trained with (a later stage's plot
    then places the trials of earlier stages too)."""
    names = list(dict.fromkeys(name for o in outcomes for name in o.trial.settings))
    return [
        {
            "trial": o.trial.name,
            "stage": o.trial.stage,
            **{name: o.trial.settings.get(name, _trained_with(o.trial.config, name)) for name in names},
            **trial_metrics(o.trained),
            "winner": o.trial.name == selection.winner,
            "disqualified": selection.disqualified.get(o.trial.name, ""),
        }
        for o in outcomes
    ]


def _trained_with(config: SimPOConfig, name: str) -> Any:
    """The value of hyper-parameter `name` in a resolved training config (γ/β from γ and β)."""
    if name == "gamma_beta_ratio":
        return config.gamma / config.beta
    return getattr(config, name)


def plot_sweep(rows: list[dict[str, Any]], names: list[str], metric: str, path: Path) -> Path:
    """One panel per swept hyper-parameter: `metric` (and reward accuracy) of each trial against
    its value, the winner ringed; learning rates on a log axis. Writes a PNG."""
    from matplotlib.figure import Figure  # no pyplot: no global backend state, works headless

    figure = Figure(figsize=(4.2 * max(len(names), 1), 3.6), layout="constrained")
    axes = figure.subplots(1, max(len(names), 1), squeeze=False)[0]
    for axis, name in zip(axes, names):
        numeric = [row for row in rows if isinstance(row.get(name), (int, float)) and row.get(metric) is not None]
        for key, marker in ((metric, "o"), ("reward_accuracy", "^")):
            axis.scatter([row[name] for row in numeric], [row[key] for row in numeric], marker=marker, label=key)
        axis.scatter(
            [row[name] for row in numeric if row["winner"]],
            [row[metric] for row in numeric if row["winner"]],
            s=160, facecolors="none", edgecolors="red", label="winner",
        )  # fmt: skip
        if name == "lr" and all(row[name] > 0 for row in numeric):
            axis.set_xscale("log")
        axis.set_xlabel(name)
        axis.set_ylabel("held-out accuracy")
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    figure.suptitle(f"sweep: held-out {metric} per trial")
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    return path
