import pytest

from simpo_core.errors import ConfigError
from simpo_core.train.config import EarlyStopping, SimPOConfig
from simpo_core.train.monitor import EarlyStopper, EvalMonitor, margin_warnings


def _kinds(warnings):
    return [warning.kind for warning in warnings]


def test_both_logps_falling_while_the_margin_grows_is_likelihood_displacement():
    warnings = margin_warnings(chosen=[-1.0, -1.2, -1.5], rejected=[-1.1, -1.6, -2.3], margins=[0.2, 0.8, 1.6])
    assert _kinds(warnings) == ["likelihood_displacement"]
    assert "-1.0000 → -1.5000" in warnings[0].message


def test_chosen_rising_is_healthy_and_one_rise_inside_the_window_breaks_the_fall():
    assert margin_warnings([-1.0, -0.9, -0.8], [-1.1, -1.6, -2.3], [0.2, 1.4, 3.0]) == []
    # chosen falls overall but rose once: not "fell for every evaluation"
    assert margin_warnings([-1.0, -0.9, -1.5], [-1.1, -1.6, -2.3], [0.2, 1.4, 1.6]) == []
    # both fall but the margin shrinks: the model is getting worse at everything, not displacement
    assert margin_warnings([-1.0, -1.2, -1.5], [-1.1, -1.3, -1.55], [0.2, 0.2 - 0.1, 0.1]) == []


def test_a_margin_within_the_tolerance_over_the_window_has_stalled():
    assert _kinds(margin_warnings([-1.0, -0.9, -0.8], [-2.0, -1.9, -1.8], [1.0, 1.0004, 0.9998])) == ["margin_stall"]
    assert margin_warnings([-1.0, -0.9, -0.8], [-2.0, -1.9, -1.8], [1.0, 1.0004, 1.002]) == []
    assert margin_warnings([-1.0], [-2.0], [1.0]) == []  # one evaluation says nothing


def test_windows_of_different_lengths_are_refused():
    with pytest.raises(ValueError, match="equally long"):
        margin_warnings([-1.0, -2.0], [-1.0], [0.1, 0.2])


def test_early_stopper_counts_evaluations_without_an_improvement_above_min_delta():
    stopper = EarlyStopper(EarlyStopping(patience=2, min_delta=0.05))
    # 0.5 best; 0.54 is not > 0.55; 0.6 is; then 0.6, 0.65 (not > 0.65) end it
    assert [stopper.update(v) for v in (0.5, 0.54, 0.6, 0.6, 0.65)] == [False, False, False, False, True]
    assert stopper.best == 0.6
    low = EarlyStopper(EarlyStopping(metric="eval_loss", mode="min", patience=1))
    assert [low.update(v) for v in (0.7, 0.6, 0.6)] == [False, False, True]


def _eval(chosen, rejected, margin, accuracy=0.5):
    return {
        "eval_logps/chosen": chosen,
        "eval_logps/rejected": rejected,
        "eval_rewards/margins": margin,
        "eval_rewards/accuracies": accuracy,
    }


def test_monitor_warns_once_when_a_condition_starts_and_restores_from_its_state():
    monitor = EvalMonitor(EarlyStopping(patience=3), window=3)
    seen = [monitor.observe(_eval(-1.0 - i, -1.0 - 2 * i, 0.5 * i, accuracy=0.6)) for i in range(4)]
    assert [_kinds(warnings) for warnings, _ in seen] == [[], [], ["likelihood_displacement"], []]
    assert [stop for _, stop in seen][:3] == [None, None, None]
    assert seen[3][1] is not None and "eval_rewards/accuracies" in seen[3][1]  # 0.6 four times: 3 without gain

    again = EvalMonitor(EarlyStopping(patience=3), window=3)
    again.load_state_dict(monitor.state_dict())
    assert again.state_dict() == monitor.state_dict()
    assert again.stopper.evals_without_improvement == 3
    again.load_state_dict(None)  # a checkpoint from before the monitor: nothing to restore
    assert again.stopper.best == 0.6


def test_monitor_window_none_turns_the_warnings_off():
    monitor = EvalMonitor(None, window=None)
    assert [monitor.observe(_eval(-1.0 - i, -1.0 - 2 * i, 0.5 * i)) for i in range(3)] == [([], None)] * 3


def test_config_rejects_early_stopping_without_periodic_evaluation_and_unknown_metrics():
    with pytest.raises(ConfigError, match="eval_steps"):
        SimPOConfig.from_dict({"early_stopping": {"patience": 2}})
    with pytest.raises(ConfigError, match="early_stopping.metric"):
        SimPOConfig.from_dict({"eval_steps": 5, "early_stopping": {"metric": "eval_accuracy"}})
    with pytest.raises(ConfigError, match="unknown key 'early_stopping.patiense'"):
        SimPOConfig.from_dict({"eval_steps": 5, "early_stopping": {"patiense": 2}})
    config = SimPOConfig.from_dict({"eval_steps": 5, "early_stopping": {"patience": 2}})
    assert config.early_stopping.metric == "eval_rewards/accuracies" and config.early_stopping.mode == "max"
