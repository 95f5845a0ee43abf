"""Which trial wins a sweep, and how the trials are reported (summary, table, plot)."""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from simpo_core.gate.promotion import MIN_DISTINCT_RATE
from simpo_core.sweep.plan import Trial
from simpo_core.sweep.settings import SweepSettings
from simpo_core.train.config import SimPOConfig

TABLE_METRICS = ("length_controlled_accuracy", "reward_accuracy", "reward_margin", "loss", "length_reward_correlation")


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
