"""What a training tells its listeners: one method per event, as transformers' `TrainerCallback`.

`SimPOTrainer(..., callbacks=[...])` and `sft_train(..., callbacks=[...])` take `TrainerEvents`
objects; a listener subclasses `TrainerEvents` and overrides only the events it cares about
(every method here does nothing). Under torchrun only the main process calls them: every
process holds the same metrics.

Each method gets the optimizer step the event happened at (1-based: steps done so far) and a
copy of the metrics, so a listener may keep or change what it is given.
"""

from collections.abc import Sequence

from simpo_core.errors import ConfigError


class TrainerEvents:
    """Base class of a training's listeners: override the events to act on."""

    def on_log(self, step: int, metrics: dict[str, float]) -> None:
        """Training metrics averaged over the steps since the last log (`step`, `epoch`, `lr`,
        `loss`, `rewards/...`, `logps/...`, `grad_norm`; SFT: `step`, `loss`, `lr`)."""

    def on_eval(self, step: int, metrics: dict[str, float]) -> None:
        """A held-out evaluation: `step`, `epoch`, `lr` and the `eval_`-prefixed metrics."""

    def on_checkpoint(self, step: int, metrics: dict[str, float]) -> None:
        """A checkpoint of step `step` is complete on disk; `metrics` are the last logged ones."""

    def on_end(self, step: int, metrics: dict[str, float]) -> None:
        """Training ended: the last logged metrics and the final evaluation's (when there was one)."""

    def on_warning(self, step: int, kind: str, message: str) -> None:
        """The margin monitor raised a warning (`kind`: `likelihood_displacement` or `margin_stall`;
        see `simpo_core.train.monitor`)."""

    def on_early_stop(self, step: int, message: str) -> None:
        """Early stopping ends training at `step`; `message` says why."""


def checked_listeners(callbacks: Sequence[TrainerEvents] | None) -> list[TrainerEvents]:
    """The callbacks as a list.

    Raises:
        ConfigError: one is not a `TrainerEvents` (a plain function, as older code passed).
    """
    listeners = list(callbacks or [])
    for listener in listeners:
        if not isinstance(listener, TrainerEvents):
            raise ConfigError(
                f"callbacks take TrainerEvents objects, got {listener!r}: subclass "
                "simpo_core.train.events.TrainerEvents and override the events to act on (on_log, on_eval, ...)"
            )
    return listeners
