"""Sweep planning and winner selection (simpo_core.sweep), and the choice of task runner."""

from pathlib import Path

import pytest
from pydantic import ValidationError

from simpo_core.errors import ConfigError
from simpo_core.sweep.plan import (
    Stage,
    Trial,
    authors_protocol,
    expand_grid,
    planned_stages,
    stage_trials,
    trial_config,
    trial_label,
    typed_settings,
)
from simpo_core.sweep.selection import TrialOutcome, results_table, select_winner
from simpo_core.sweep.settings import SweepSettings
from simpo_core.train.config import SimPOConfig
from simpo_core.train.training_folder import TrainResult

TINY = SimPOConfig(lr=1e-3, beta=2.0, gamma=1.0)  # the scale of the tiny model (γ absolute)


def test_grid_expands_every_combination_first_name_slowest():
    assert expand_grid({"lr": [1e-3, 3e-4], "beta": [2.0, 10.0]}) == [
        {"lr": 1e-3, "beta": 2.0},
        {"lr": 1e-3, "beta": 10.0},
        {"lr": 3e-4, "beta": 2.0},
        {"lr": 3e-4, "beta": 10.0},
    ]


def test_authors_protocol_tunes_lr_first_at_the_models_scale_then_ratio_then_beta():
    # The authors search 3e-7, 5e-7, 1e-6 for 7-8B models: 0.3, 0.5 and 1 x the configured lr.
    paper = authors_protocol(SimPOConfig.preset("llama3-8b-instruct"))  # lr 1e-6
    assert [stage.name for stage in paper] == ["learning rate", "gamma/beta", "beta"]
    assert paper[0].combos == [{"lr": 3e-7}, {"lr": 5e-7}, {"lr": 1e-6}]
    assert paper[1].combos == [{"gamma_beta_ratio": 0.1}, {"gamma_beta_ratio": 0.5}, {"gamma_beta_ratio": 0.8}]
    assert paper[2].combos == [{"beta": 2.0}, {"beta": 2.5}, {"beta": 10.0}]
    assert authors_protocol(TINY)[0].combos == [{"lr": 3e-4}, {"lr": 5e-4}, {"lr": 1e-3}]
    assert planned_stages(SweepSettings(), TINY) == authors_protocol(TINY)


def test_a_later_stage_starts_from_the_best_settings_and_skips_a_training_already_done():
    base_lr = Trial("lr=0.001", "learning rate", {"lr": 1e-3}, trial_config(TINY, {"lr": 1e-3}))
    stage = Stage("gamma/beta", [{"gamma_beta_ratio": 0.1}, {"gamma_beta_ratio": 0.5}])
    trials = stage_trials(stage, {"lr": 1e-3}, TINY, [base_lr])
    # ratio 0.5 at β 2 is γ 1.0: the same training as the lr trial, so it is not run twice.
    assert [trial.name for trial in trials] == ["lr=0.001,gamma_beta_ratio=0.1"]
    assert trials[0].config.gamma == pytest.approx(0.2) and trials[0].config.lr == 1e-3


def test_gamma_is_resolved_whichever_way_the_trial_sets_it():
    ratio = trial_config(TINY, {"beta": 10.0, "gamma_beta_ratio": 0.3})
    assert (ratio.gamma, ratio.gamma_beta_ratio) == (pytest.approx(3.0), None)
    paper = SimPOConfig.preset("mistral-7b-base")  # β 2.0, γ/β 0.8
    assert trial_config(paper, {"beta": 2.5}).gamma == pytest.approx(2.0)  # the ratio follows β
    assert trial_config(paper, {"gamma": 0.5}).gamma == 0.5  # an absolute γ drops the ratio


def test_values_read_from_yaml_as_strings_become_the_configs_types():
    # YAML reads `1e-3` (no dot) as a string; the trial keeps the number the config uses.
    assert typed_settings(TINY, {"lr": "1e-3", "beta": 2}) == {"lr": 0.001, "beta": 2.0}
    assert trial_label({"lr": 0.001, "beta": 2.0, "loss_type": "hinge"}) == "lr=0.001,beta=2,loss_type=hinge"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"grid": {"lrr": [1e-3]}}, "sweep.grid: unknown hyper-parameter 'lrr'"),
        ({"grid": {"output_dir": ["x"]}}, "unknown hyper-parameter 'output_dir'"),
        ({"grid": {}}, "sweep.grid is empty"),
        ({"stages": [{"lr": [1e-3]}, {"beta": []}]}, r"sweep.stages\[1\].beta has no values"),
        ({"trials": []}, "sweep.trials is empty"),
        ({"trials": [{"gamma": 1, "gamma_beta_ratio": 0.5}]}, "set gamma or gamma_beta_ratio, not both"),
        ({"grid": {"lr": [1e-3]}, "trials": [{"lr": 1e-3}]}, "not grid and trials"),
        ({"dask_address": "tcp://10.0.0.5:8786"}, "sweep.dask_address needs sweep.runner=dask"),
        ({"max_concurrency": 0}, "greater than or equal to 1"),
    ],
)
def test_bad_sweep_settings_fail_at_once_naming_the_field(values, message):
    with pytest.raises(ValidationError, match=message):
        SweepSettings(**values)


def test_a_value_the_training_config_refuses_fails_before_any_trial_runs():
    with pytest.raises(ConfigError, match=r"sweep trial lr=-0.1[\s\S]*lr: Input should be greater than 0"):
        planned_stages(SweepSettings(grid={"lr": [1e-3, -0.1]}), TINY)


def outcome(name, lc, accuracy, collapsed=False, error=None, distinct=1.0):
    generation = {"collapsed": collapsed, "collapse_reasons": ["repetition 0.80 > 0.5"] if collapsed else []}
    generation["greedy"] = {"distinct_rate": distinct}
    trained = (
        None if error else {"length_controlled_accuracy": lc, "reward_accuracy": accuracy, "generation": generation}
    )
    return TrialOutcome(Trial(name, "grid", {"lr": float(len(name))}, TINY), trained=trained, error=error)


def test_the_winner_has_the_best_length_controlled_accuracy_among_eligible_trials():
    outcomes = [
        outcome("a", 0.60, 0.62),
        outcome("collapsed", 0.90, 0.90, collapsed=True),  # best numbers, but it collapsed
        outcome("same-answers", 0.85, 0.85, distinct=0.25),  # one reply to every prompt
        outcome("weak", 0.70, 0.45),  # below min_reward_accuracy 0.5
        outcome("crashed", None, None, error="RuntimeError: out of memory"),
        outcome("b", 0.65, 0.61),
    ]
    selection = select_winner(outcomes, SweepSettings())
    assert selection.winner == "b"
    assert "best held-out length_controlled_accuracy 0.650 of 2 eligible" in selection.reason
    assert selection.disqualified == {
        "collapsed": "collapsed: repetition 0.80 > 0.5",
        "same-answers": "collapsed: greedy distinct-answer rate 0.25 < 0.5",
        "weak": "reward accuracy 0.450 < sweep.min_reward_accuracy 0.5",
        "crashed": "failed: RuntimeError: out of memory",
    }
    assert select_winner(outcomes, SweepSettings(metric="reward_accuracy")).winner == "a"


def test_ties_go_to_the_higher_reward_accuracy_then_to_the_earlier_trial():
    assert select_winner([outcome("x", 0.6, 0.60), outcome("y", 0.6, 0.70)], SweepSettings()).winner == "y"
    assert select_winner([outcome("x", 0.6, 0.60), outcome("y", 0.6, 0.60)], SweepSettings()).winner == "x"


def test_no_winner_says_why_each_trial_failed_to_qualify():
    undefined = outcome("one-sided", None, 0.7)  # no chosen-shorter pairs held out
    unchecked = outcome("unchecked", 0.7, 0.7)
    unchecked.trained["generation"] = None  # eval.generation_samples=0
    selection = select_winner([undefined, unchecked], SweepSettings(min_reward_accuracy=0.6))
    assert selection.winner is None
    assert selection.reason.startswith("no trial qualifies (one-sided: length_controlled_accuracy is undefined")
    assert "set sweep.metric=reward_accuracy" in selection.reason
    assert "unchecked: no generation check (eval.generation_samples=0)" in selection.reason


def test_results_table_has_one_row_per_trial_with_its_settings_and_verdict():
    outcomes = [outcome("a", 0.60, 0.62), outcome("weak", 0.70, 0.45)]
    rows = results_table(outcomes, select_winner(outcomes, SweepSettings()))
    assert [(row["trial"], row["lr"], row["winner"]) for row in rows] == [("a", 1.0, True), ("weak", 4.0, False)]
    assert rows[1]["disqualified"].startswith("reward accuracy 0.450")
    assert rows[0]["length_controlled_accuracy"] == 0.60 and rows[0]["collapsed"] is False


def test_local_runner_is_a_thread_pool_and_dask_builds_a_cluster_or_connects():
    from prefect.task_runners import ThreadPoolTaskRunner
    from prefect_dask import DaskTaskRunner

    from flows.sweep import task_runner

    local = task_runner(SweepSettings(max_concurrency=3))
    assert isinstance(local, ThreadPoolTaskRunner) and local._max_workers == 3
    cluster = task_runner(SweepSettings(runner="dask", max_concurrency=2))
    assert isinstance(cluster, DaskTaskRunner) and cluster.address is None
    assert cluster.cluster_kwargs["n_workers"] == 2 and cluster.cluster_kwargs["threads_per_worker"] == 1
    assert cluster.cluster_kwargs["host"] == "127.0.0.1"  # the scheduler listens on loopback only
    remote = task_runner(SweepSettings(runner="dask", dask_address="tcp://10.0.0.5:8786"))
    assert remote.address == "tcp://10.0.0.5:8786" and remote.cluster_kwargs == {}


def test_dask_local_cluster_gives_each_worker_its_own_gpus():
    from flows.sweep import task_runner
    from simpo_core.sweep.placement import gpu_worker_class, trial_placement

    sweep = SweepSettings(runner="dask")
    assert sweep.max_concurrency is None  # unset: decided by the machine (one per GPU, 1 without)
    runner = task_runner(sweep, trial_placement(sweep, "auto", per_trial=1, gpus=3))
    kwargs = runner.cluster_kwargs
    assert kwargs["n_workers"] == 3 and kwargs["threads_per_worker"] == 1
    assert kwargs["worker_class"] is gpu_worker_class() and kwargs["gpu_groups"] == ["0", "1", "2"]


class _Done:
    """A finished future as `as_completed` sees it."""

    _final_state = True

    def __init__(self, value):
        self.value = value

    def result(self):
        if isinstance(self.value, Exception):
            raise self.value
        return self.value


class _Runner:
    """Runs each submitted task at once, recording the device it was given and the GPUs in use."""

    def __init__(self, placement, failing):
        self.placement, self.failing, self.calls = placement, failing, []

    def submit(self, task, arguments):
        trial = task.task_run_name.split("-trial-", 1)[1]
        training = task.task_run_name.startswith("train-")
        device = arguments["job"].device if training else arguments["settings"].device
        self.calls.append((task.task_run_name, device, self.placement.pool.in_use()))
        if training and trial in self.failing:
            return _Done(RuntimeError("out of memory"))
        result = TrainResult(Path(f"/m/{trial}"), 1, []) if training else {"trained": {}}
        return _Done(result)


def test_concurrent_trials_train_and_evaluate_on_their_own_gpu_and_give_it_back(monkeypatch, tmp_path):
    import logging
    from types import SimpleNamespace

    import flows.sweep as sweep_flow
    from flows.params import RetrainParams
    from simpo_core.sweep.placement import trial_placement
    from tasks.helpers.tracking import Tracking

    monkeypatch.setattr(sweep_flow, "get_run_logger", lambda: logging.getLogger("test"))
    placement = trial_placement(SweepSettings(max_concurrency=3), "auto", per_trial=1, gpus=4)
    context = SimpleNamespace(
        params=RetrainParams(), run_dir=tmp_path,
        split=SimpleNamespace(train_path=tmp_path / "train.jsonl", heldout_path=tmp_path / "heldout.jsonl"),
        parent=Tracking("sqlite://", "parent"), identity=lambda trial: trial.name * 8, placement=placement,
    )  # fmt: skip
    trials = [Trial(name, "grid", {}, TINY) for name in ("a", "b", "c", "d", "e")]
    runner = _Runner(placement, failing={"b"})
    outcomes = sweep_flow.run_trials(runner, trials, {t.name: "run" for t in trials}, 3, context)

    assert [o.error for o in outcomes] == [None, "RuntimeError: out of memory", None, None, None]
    for name, device, in_use in runner.calls:
        assert device.startswith("cuda:") and max(in_use.values()) <= 1, (name, in_use)  # never two trials on one GPU
    devices = {name: device for name, device, _ in runner.calls}
    for trial in ("a", "c", "d", "e"):  # a trial is evaluated where it trained
        assert devices[f"evaluate-trial-{trial}"] == devices[f"train-trial-{trial}"]
    assert placement.pool.in_use() == dict.fromkeys(["cuda:0", "cuda:1", "cuda:2", "cuda:3"], 0)  # all given back
    assert placement.held == {}
