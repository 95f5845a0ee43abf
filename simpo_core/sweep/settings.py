"""`SweepSettings`: what a sweep tries, where its trials run, and how the winner is picked."""

from typing import Any, Literal

from pydantic import Field, model_validator

from simpo_core.gate.identity import IGNORED_TRAINING_FIELDS
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
        "GPUs) with model.device auto, else 1 (simpo_core.sweep.placement.trial_placement)",
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
