"""What the trainer keeps across steps: the step-metric window, early stopping, the margin monitor.

`StepWindow` sums the metrics of the steps since the last log, which reports their means.

Both read only the held-out metrics of each periodic evaluation. Under torchrun those are
summed across processes before anyone reads them, so every process reaches the same
decision at the same step and all stop together.

Margin monitor, over the last `monitor_window` evaluations:

- likelihood displacement: `logps/chosen` and `logps/rejected` both fell at every
  evaluation while `rewards/margins` grew. The model separates the pair by pushing both
  responses down, the chosen one included, which often precedes degenerate generations.
- margin stall: `rewards/margins` moved by less than `MARGIN_STALL_TOLERANCE` over the window.

A warning is raised when its condition starts to hold and again only after it has cleared.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from simpo_core.train.config import EarlyStopping

MARGIN_STALL_TOLERANCE = 1e-3  # |Δ margin| over the window below this counts as stalled (reward units)

# The eval metrics the margin monitor keeps, in the order `margin_warnings` takes them.
MONITORED = ("eval_logps/chosen", "eval_logps/rejected", "eval_rewards/margins")


class StepWindow:
    """Step metrics summed since the last report (`sums` also counts the steps under `_steps`).

    Args:
        sums: a saved `sums` (from a checkpoint) to continue from; None starts empty.
    """

    def __init__(self, sums: dict[str, float] | None = None) -> None:
        self.sums: dict[str, float] = dict(sums or {})

    def add(self, metrics: dict[str, float]) -> None:
        """Add one step's metrics."""
        for key, value in metrics.items():
            self.sums[key] = self.sums.get(key, 0.0) + value
        self.sums["_steps"] = self.sums.get("_steps", 0.0) + 1

    def pop_means(self) -> dict[str, float]:
        """The mean of each metric over the window's steps; the window is emptied."""
        steps = self.sums.pop("_steps")
        means = {key: value / steps for key, value in self.sums.items()}
        self.sums = {}
        return means


@dataclass(frozen=True)
class MonitorWarning:
    """One warning of the margin monitor: `kind` is `likelihood_displacement` or `margin_stall`."""

    kind: str
    message: str


def margin_warnings(
    chosen: Sequence[float],
    rejected: Sequence[float],
    margins: Sequence[float],
    tolerance: float = MARGIN_STALL_TOLERANCE,
) -> list[MonitorWarning]:
    """Warnings that a window of evaluations calls for (a pure function of the numbers).

    Args:
        chosen, rejected: mean token log-probs of the chosen / rejected responses, oldest first.
        margins: mean reward margins at the same evaluations.
        tolerance: a margin whose range over the window is below this has stalled.

    Returns:
        Zero, one or two warnings; none for fewer than two evaluations.

    Raises:
        ValueError: the three sequences differ in length.
    """
    if not len(chosen) == len(rejected) == len(margins):
        raise ValueError(f"need equally long windows; got {len(chosen)}, {len(rejected)}, {len(margins)} values")
    if len(margins) < 2:
        return []
    warnings = []

    def falling(values: Sequence[float]) -> bool:
        return all(later < earlier for earlier, later in zip(values, values[1:]))

    if falling(chosen) and falling(rejected) and margins[-1] > margins[0]:
        warnings.append(
            MonitorWarning(
                "likelihood_displacement",
                f"over the last {len(margins)} evaluations the chosen log-prob fell {chosen[0]:.4f} → {chosen[-1]:.4f} "
                f"and the rejected one {rejected[0]:.4f} → {rejected[-1]:.4f} while the margin grew "
                f"{margins[0]:.4f} → {margins[-1]:.4f}: likelihood displacement (check generations; consider a "
                "lower lr or sft_weight > 0)",
            )
        )
    if max(margins) - min(margins) < tolerance:
        warnings.append(
            MonitorWarning(
                "margin_stall",
                f"the reward margin stayed within {tolerance:g} of {margins[-1]:.4f} over the last {len(margins)} "
                "evaluations: training no longer separates the pairs (consider early_stopping or a different lr)",
            )
        )
    return warnings


@dataclass
class EarlyStopper:
    """Patience counter on one held-out metric.

    Args:
        settings: the metric, its direction, the patience and the least improvement that counts.
    """

    settings: EarlyStopping
    best: float | None = None
    evals_without_improvement: int = 0

    def update(self, value: float) -> bool:
        """Record one evaluation's value; return True when training should stop."""
        delta = self.settings.min_delta
        if self.best is None:
            improved = True
        elif self.settings.mode == "max":
            improved = value > self.best + delta
        else:
            improved = value < self.best - delta
        if improved:
            self.best, self.evals_without_improvement = value, 0
        else:
            self.evals_without_improvement += 1
        return self.evals_without_improvement >= self.settings.patience


@dataclass
class EvalMonitor:
    """Early stopping and margin monitor, fed the metrics of each periodic evaluation.

    Args:
        early_stopping: None never stops.
        window: evaluations the margin monitor looks back over; None turns it off.
    """

    early_stopping: EarlyStopping | None = None
    window: int | None = 3
    history: list[list[float]] = field(default_factory=list)  # MONITORED values per evaluation, newest last
    active: list[str] = field(default_factory=list)  # warning kinds whose condition held at the last evaluation
    stopper: EarlyStopper | None = None

    def __post_init__(self) -> None:
        if self.early_stopping is not None and self.stopper is None:
            self.stopper = EarlyStopper(self.early_stopping)

    def observe(self, metrics: dict[str, float]) -> tuple[list[MonitorWarning], str | None]:
        """Take one evaluation's `eval_`-prefixed metrics.

        Returns:
            `(new_warnings, stop_reason)`: the warnings whose condition just started to hold,
            and why training should stop now (None to go on).
        """
        new: list[MonitorWarning] = []
        if self.window:
            self.history = [*self.history, [metrics[key] for key in MONITORED]][-self.window :]
            found = margin_warnings(*zip(*self.history)) if len(self.history) == self.window else []
            new = [warning for warning in found if warning.kind not in self.active]
            self.active = [warning.kind for warning in found]
        stop = None
        if self.stopper is not None and self.stopper.update(metrics[self.stopper.settings.metric]):
            settings = self.stopper.settings
            stop = (
                f"{settings.metric} has not improved by more than {settings.min_delta:g} on its best "
                f"({self.stopper.best:.4f}) for {settings.patience} evaluation(s)"
            )
        return new, stop

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint keeps, so that a resumed run stops and warns as the uninterrupted one."""
        stopper = self.stopper
        return {
            "history": self.history,
            "active": self.active,
            "best": None if stopper is None else stopper.best,
            "evals_without_improvement": 0 if stopper is None else stopper.evals_without_improvement,
        }

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        """Restore `state_dict()`; None (a checkpoint written before the monitor existed) starts afresh."""
        if not state:
            return
        self.history, self.active = [list(values) for values in state["history"]], list(state["active"])
        if self.stopper is not None:
            self.stopper.best = state["best"]
            self.stopper.evals_without_improvement = state["evals_without_improvement"]
