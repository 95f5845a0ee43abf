"""What a SimPO training has reported so far, and the listeners it reports to.

`RunRecord` keeps the metric history (logged and evaluated entries), the last logged
metrics, the epoch reached, the step metrics since the last log (`monitor.StepWindow`) and the margin monitor
with early stopping (`monitor.EvalMonitor`), and tells the training's listeners
(`events.TrainerEvents`) about each entry. Under torchrun every process keeps the same
record (metrics are summed across processes first) but only the main process tells the
listeners. `state_dict` is what a checkpoint keeps, so that a resumed run logs, warns and
stops as the uninterrupted one would.
"""

import logging
from typing import Any

from simpo_core.train.config import SimPOConfig
from simpo_core.train.events import TrainerEvents
from simpo_core.train.monitor import EvalMonitor, StepWindow

logger = logging.getLogger(__name__)


class RunRecord:
    """The history, the step window, the monitor and the early stop of one training.

    Args:
        config: `early_stopping` and `monitor_window` are read.
        listeners: the trainer's `callbacks` list itself, so that listeners added later are told too.
        is_main: whether this process tells the listeners and logs the monitor's warnings.
    """

    def __init__(self, config: SimPOConfig, listeners: list[TrainerEvents], is_main: bool) -> None:
        self.config, self.listeners, self.is_main = config, listeners, is_main
        self.reset()

    def reset(self) -> None:
        """Start a new run: nothing logged, evaluated or stopped."""
        self.history: list[dict[str, float]] = []
        self.epoch = 0.0  # epochs of training data seen, after the last step
        self.last_metrics: dict[str, float] = {}
        self.window = StepWindow()  # step metrics since the last log
        self.monitor = EvalMonitor(self.config.early_stopping, self.config.monitor_window)
        self.stopped_early_at_step: int | None = None

    def _told(self) -> list[TrainerEvents]:
        return self.listeners if self.is_main else []  # every process holds the same metrics: report once

    def log(self, step: int, total_steps: int) -> None:
        """Log the means of the steps since the last log as one history entry."""
        means = self.window.pop_means()
        lr = means.pop("lr")
        entry = {"step": step, "epoch": self.epoch, "lr": lr, **means}
        self.history.append(entry)
        self.last_metrics = entry
        logger.info(
            "step %d/%d  loss %.4f  acc %.3f  margin %.3f  lr %.3g",
            step,
            total_steps,
            entry["loss"],
            entry["rewards/accuracies"],
            entry["rewards/margins"],
            lr,
        )
        for listener in self._told():
            listener.on_log(step, dict(entry))

    def evaluated(self, step: int, lr: float, metrics: dict[str, float]) -> dict[str, float]:
        """Record one evaluation's `eval_`-prefixed metrics as a history entry; return the entry."""
        entry = {"step": step, "epoch": self.epoch, "lr": lr, **metrics}
        self.history.append(entry)
        logger.info(
            "step %d  eval_loss %.4f  eval_acc %.3f", step, entry["eval_loss"], entry["eval_rewards/accuracies"]
        )
        for listener in self._told():
            listener.on_eval(step, dict(entry))
        return entry

    def watch(self, entry: dict[str, float], step: int, total_steps: int) -> None:
        """Feed a periodic evaluation to the monitor: report its new warnings, stop early when it says so."""
        warnings, stop_reason = self.monitor.observe(entry)
        for warning in warnings:
            if self.is_main:
                logger.warning("step %d: %s", step, warning.message)
            for listener in self._told():
                listener.on_warning(step, warning.kind, warning.message)
        if stop_reason is not None and step < total_steps:  # the last step is no early stop
            self._stop_early(step, total_steps, stop_reason)

    def _stop_early(self, step: int, total_steps: int, reason: str) -> None:
        """End training at `step`: log the unlogged steps, then mark the history and tell the listeners."""
        if self.window.sums:
            self.log(step, total_steps)
        self.stopped_early_at_step = step
        self.last_eval(step)["stopped_early_at_step"] = step
        self.last_metrics = {**self.last_metrics, "stopped_early_at_step": step}
        message = f"stopping early at step {step}/{total_steps}: {reason}"
        if self.is_main:
            logger.info(message)
        for listener in self._told():
            listener.on_early_stop(step, message)

    def last_eval(self, step: int) -> dict[str, float]:
        """The history entry of an evaluation at `step` (the entry itself), or an empty dict."""
        return next((e for e in reversed(self.history) if "eval_loss" in e and e["step"] == step), {})

    def checkpointed(self, step: int) -> None:
        for listener in self._told():
            listener.on_checkpoint(step, dict(self.last_metrics))

    def ended(self, step: int) -> None:
        for listener in self._told():
            listener.on_end(step, {**self.last_metrics, **self.last_eval(step)})

    def state_dict(self) -> dict[str, Any]:
        return {
            "history": self.history,
            "window": self.window.sums,
            "last_metrics": self.last_metrics,
            "epoch": self.epoch,
            "monitor": self.monitor.state_dict(),
            "stopped_early_at_step": self.stopped_early_at_step,  # a resumed run that stopped stays stopped
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore `state_dict()` (from a checkpoint's trainer state)."""
        self.history, self.last_metrics, self.epoch = state["history"], state["last_metrics"], state["epoch"]
        self.window = StepWindow(state["window"])
        self.monitor.load_state_dict(state.get("monitor"))
        self.stopped_early_at_step = state.get("stopped_early_at_step")
