"""SimPO with and without length normalisation ("w/o LN"), on numbers derived by hand.

Two pairs, β = 2, γ = 1, sigmoid loss:

    pair 0: chosen Σ = −6 over 3 tokens (avg −2), rejected Σ = −4 over 1 token (avg −4)
    pair 1: chosen Σ = −2 over 2 tokens (avg −1), rejected Σ = −3 over 3 tokens (avg −1)

    with LN:    z0 = 2·(−2 + 4) − 1 = 3    loss log(1 + e^−3)     rewards (−4, −8), (−2, −2)
                z1 = 2·(−1 + 1) − 1 = −1   loss log(1 + e)
    without LN: z0 = 2·(−6 + 4) − 1 = −5   loss log(1 + e^5)      rewards (−12, −8), (−4, −6)
                z1 = 2·(−2 + 3) − 1 = 1    loss log(1 + e^−1)

The length bias flips both verdicts: summed log-probs punish the longer chosen response of
pair 0 and favour the shorter chosen response of pair 1.
"""

import math

import torch
from torch.testing import assert_close

from simpo_core.train.config import SimPOConfig
from simpo_core.train.loss import PairLogps, SimPOLoss, step_metrics


def _logps():
    return PairLogps(
        chosen=torch.tensor([-6.0, -2.0]),
        rejected=torch.tensor([-4.0, -3.0]),
        chosen_len=torch.tensor([3, 2]),
        rejected_len=torch.tensor([1, 3]),
    )


def _softplus(x):
    return math.log1p(math.exp(x))


def test_with_length_normalisation_rewards_are_beta_times_the_mean_token_logprob():
    losses, chosen, rejected = SimPOLoss(beta=2.0, gamma=1.0)(_logps())
    assert_close(losses, torch.tensor([_softplus(-3.0), _softplus(1.0)]))
    assert_close(chosen, torch.tensor([-4.0, -2.0]))
    assert_close(rejected, torch.tensor([-8.0, -2.0]))


def test_without_length_normalisation_rewards_are_beta_times_the_summed_logprob():
    losses, chosen, rejected = SimPOLoss(beta=2.0, gamma=1.0, length_normalize=False)(_logps())
    assert_close(losses, torch.tensor([_softplus(5.0), _softplus(-1.0)]))
    assert_close(chosen, torch.tensor([-12.0, -4.0]))
    assert_close(rejected, torch.tensor([-8.0, -6.0]))


def test_sft_term_and_logps_metrics_do_not_depend_on_the_flag():
    """SFT: 0.5 · (6 + 2) / 5 chosen tokens = 0.8 either way; logps/chosen = mean(−2, −1) = −1.5."""
    for normalize, simpo_part in ((True, _softplus(-3.0) + _softplus(1.0)), (False, _softplus(5.0) + _softplus(-1.0))):
        loss_fn = SimPOLoss(beta=2.0, gamma=1.0, sft_weight=0.5, length_normalize=normalize)
        logps = _logps()
        losses, chosen, rejected = loss_fn(logps)
        loss = loss_fn.step_loss(losses, logps, n_pairs=2, n_chosen_tokens=5)
        assert_close(loss, torch.tensor(simpo_part / 2 + 0.8))
        metrics = step_metrics(loss, logps, chosen, rejected, n_pairs=2)
        assert metrics["logps/chosen"] == -1.5 and metrics["logps/rejected"] == -2.5
        assert metrics["rewards/accuracies"] == 0.5  # pair 0 wins with LN, pair 1 without
        assert metrics["rewards/margins"] == (2.0 if normalize else -1.0)  # (4 + 0) / 2 and (−4 + 2) / 2


def test_the_config_flag_reaches_the_loss_and_defaults_to_simpo():
    assert SimPOLoss.from_config(SimPOConfig()).length_normalize is True
    assert SimPOLoss.from_config(SimPOConfig(length_normalize=False)).length_normalize is False
