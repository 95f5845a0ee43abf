"""SimPOLoss (built once from the config), PairLogps and the step's TRL metrics."""

import pytest
import torch
from torch.testing import assert_close

from simpo_core.errors import ConfigError
from simpo_core.train.config import SimPOConfig
from simpo_core.train.loss import PairLogps, SimPOLoss, check_loss_settings, step_metrics


def _pairs(chosen, rejected, chosen_len, rejected_len):
    return PairLogps(torch.tensor(chosen), torch.tensor(rejected), torch.tensor(chosen_len), torch.tensor(rejected_len))


def test_losses_rewards_and_step_metrics_from_summed_logps():
    """Sums [−4, −3] over [4, 1] tokens → avg [−1, −3]; rejected [−6, −2] over [3, 2] → [−2, −1].
    β = 2, γ = 1: z = [1, −5], losses [log(1 + e^−1), log(1 + e^5)] = [0.3132617, 5.0067153],
    step loss (2 pairs) 2.6599885. Rewards β·avg: chosen [−2, −6] (mean −4), rejected
    [−4, −2] (mean −3); margins [2, −4] (mean −1); accuracy 1/2; logps/chosen −2, /rejected −1.5."""
    logps = _pairs([-4.0, -3.0], [-6.0, -2.0], [4, 1], [3, 2])
    loss_fn = SimPOLoss(beta=2.0, gamma=1.0)
    losses, chosen_rewards, rejected_rewards = loss_fn(logps)
    assert_close(losses, torch.tensor([0.3132617, 5.0067153]))
    assert_close(chosen_rewards, torch.tensor([-2.0, -6.0]))
    assert_close(rejected_rewards, torch.tensor([-4.0, -2.0]))
    loss = loss_fn.step_loss(losses, logps, n_pairs=2, n_chosen_tokens=5)
    metrics = step_metrics(loss, logps, chosen_rewards, rejected_rewards, n_pairs=2)
    expected = [2.6599885, -4.0, -3.0, -1.0, 0.5, -2.0, -1.5]
    assert_close(torch.tensor(list(metrics.values())), torch.tensor(expected))
    assert list(metrics) == [
        "loss",
        "rewards/chosen",
        "rewards/rejected",
        "rewards/margins",
        "rewards/accuracies",
        "logps/chosen",
        "logps/rejected",
    ]


def test_accuracy_is_strict():
    """Equal log-probs are not a win: chosen avg [−1, −0.5] vs rejected [−1, −1] → margins
    [0, 1] → accuracy 1/2."""
    logps = _pairs([-1.0, -0.5], [-1.0, -1.0], [1, 1], [1, 1])
    loss_fn = SimPOLoss(beta=2.0, gamma=1.0)
    losses, chosen_rewards, rejected_rewards = loss_fn(logps)
    metrics = step_metrics(loss_fn.step_loss(losses, logps, 2, 2), logps, chosen_rewards, rejected_rewards, 2)
    assert metrics["rewards/accuracies"] == 0.5


def test_sft_term_is_the_token_mean_nll_of_the_chosen_responses():
    """Same pairs as above, sft_weight 0.5: add 0.5 × (4 + 3) / (4 + 1) = 0.7 → 3.3599885."""
    logps = _pairs([-4.0, -3.0], [-6.0, -2.0], [4, 1], [3, 2])
    loss_fn = SimPOLoss(beta=2.0, gamma=1.0, sft_weight=0.5)
    losses, _, _ = loss_fn(logps)
    assert_close(loss_fn.step_loss(losses, logps, n_pairs=2, n_chosen_tokens=5), torch.tensor(3.3599885))


def test_micro_batch_shares_add_up_to_the_step():
    """3 pairs at once = pairs {0, 1} + pair {2} when each part divides by the step's 3 pairs
    and 9 chosen tokens (SFT term on, so the token weighting is checked too)."""
    chosen, rejected, chosen_len, rejected_len = [-4.0, -3.0, -2.0], [-6.0, -2.0, -5.0], [4, 1, 4], [3, 2, 5]
    loss_fn = SimPOLoss(beta=2.0, gamma=1.0, sft_weight=0.5)

    def share(part):
        logps = _pairs(chosen[part], rejected[part], chosen_len[part], rejected_len[part])
        losses, chosen_rewards, rejected_rewards = loss_fn(logps)
        loss = loss_fn.step_loss(losses, logps, n_pairs=3, n_chosen_tokens=9)
        return loss, step_metrics(loss, logps, chosen_rewards, rejected_rewards, n_pairs=3)

    whole, whole_metrics = share(slice(0, 3))
    (first, first_metrics), (second, second_metrics) = share(slice(0, 2)), share(slice(2, 3))
    assert_close(first + second, whole)
    for key, value in whole_metrics.items():
        assert first_metrics[key] + second_metrics[key] == pytest.approx(value), key


def test_gradient_reaches_the_summed_logps_through_the_length():
    """β = 2, γ = 1, chosen sum −2 over 2 tokens (avg −1), rejected −1.5 over 1: z = 2·0.5 − 1 = 0.
    dL/dz = −σ(0) = −1/2, so dL/d chosen avg = −1 and dL/d chosen sum = −1/2 (÷ 2 tokens);
    dL/d rejected sum = +1. The rewards stay detached."""
    chosen = torch.tensor([-2.0], requires_grad=True)
    rejected = torch.tensor([-1.5], requires_grad=True)
    losses, chosen_rewards, _ = SimPOLoss(beta=2.0, gamma=1.0)(
        PairLogps(chosen, rejected, torch.tensor([2]), torch.tensor([1]))
    )
    losses.sum().backward()
    assert_close(chosen.grad, torch.tensor([-0.5]))
    assert_close(rejected.grad, torch.tensor([1.0]))
    assert not chosen_rewards.requires_grad


def test_from_config_takes_gamma_from_the_ratio_and_label_smoothing():
    """β = 2, γ/β = 0.5 → γ = 1; ε = 0.1. avg −1 vs −2: z = 1, loss
    0.9·log(1 + e^−1) + 0.1·log(1 + e) = 0.3132617 + 0.1 = 0.4132617."""
    loss_fn = SimPOLoss.from_config(SimPOConfig(beta=2.0, gamma_beta_ratio=0.5, label_smoothing=0.1))
    losses, _, _ = loss_fn(_pairs([-3.0], [-2.0], [3], [1]))
    assert_close(losses, torch.tensor([0.4132617]))


def test_pair_logps_names_the_shapes_that_disagree():
    with pytest.raises(ValueError, match=r"\(2,\), \(3,\), \(2,\), \(2,\)"):
        _pairs([0.0, 0.0], [0.0, 0.0, 0.0], [1, 1], [1, 1])
    with pytest.raises(ValueError, match=r"\(1, 2\)"):
        PairLogps(torch.zeros(1, 2), torch.zeros(1, 2), torch.ones(1, 2), torch.ones(1, 2))


@pytest.mark.parametrize(
    "options, message",
    [
        ({"beta": 0.0}, "beta > 0"),
        ({"loss_type": "ipo"}, "loss_type"),
        ({"label_smoothing": 0.5}, "label_smoothing"),
        ({"loss_type": "hinge", "label_smoothing": 0.1}, "0 for hinge"),
    ],
)
def test_bad_hyperparameters_fail_at_construction(options, message):
    with pytest.raises(ValueError, match=message):
        SimPOLoss(**options)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"beta": -1.0, "gamma": 1.0}, "need beta > 0"),
        ({"beta": 2.0, "gamma": -0.5}, "need gamma >= 0"),
        ({"beta": 2.0, "gamma": 1.0, "loss_type": "ipo"}, "loss_type must be 'sigmoid' or 'hinge', got 'ipo'"),
        ({"beta": 2.0, "gamma": 1.0, "label_smoothing": 0.5}, r"label_smoothing must be in \[0, 0.5\)"),
        ({"beta": 2.0, "gamma": 1.0, "label_smoothing": 0.1, "loss_type": "hinge"}, "use loss_type: sigmoid"),
        ({"beta": 2.0, "gamma": 1.0, "sft_weight": -1.0}, "need sft_weight >= 0"),
    ],
)
def test_one_check_of_the_loss_settings_says_what_to_fix(options, message):
    """The config, `SimPOLoss` and `simpo_loss` share it: a ConfigError (the CLI prints it)
    that is also the ValueError a torch-style caller catches."""
    with pytest.raises(ConfigError, match=message) as error:
        check_loss_settings(**options)
    assert isinstance(error.value, ValueError)
    check_loss_settings(2.0, 1.0, 0.1, "sigmoid", 0.5)  # in range: no error
