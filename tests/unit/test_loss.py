import math

import pytest
import torch
from torch.testing import assert_close

from simpo_core.train.config import SimPOConfig
from simpo_core.train.loss import batch_logps, simpo_loss
from simpo_core.train.trainer import SimPOTrainer

LN3 = math.log(3.0)


def test_batch_logps_literal_example():
    """V = 2. Logits [0, ln3] give probabilities [1/4, 3/4]; [ln3, 0] give [3/4, 1/4].

    Row 0: labels [-100, 1, 0]. Position 0 predicts label 1 with [0, ln3]: ln(3/4);
    position 1 predicts label 0 with [ln3, 0]: ln(3/4). Sum 2·ln(3/4), mean ln(3/4).
    Row 1: labels [-100, -100, 1]. Only position 1 counts, predicting 1 with [ln3, 0]:
    ln(1/4) for both sum and mean. The last position's logits never count.
    """
    logits = torch.tensor(
        [
            [[0.0, LN3], [LN3, 0.0], [5.0, -5.0]],
            [[0.0, LN3], [LN3, 0.0], [5.0, -5.0]],
        ]
    )
    labels = torch.tensor([[-100, 1, 0], [-100, -100, 1]])
    assert_close(batch_logps(logits, labels, average=False), torch.tensor([2 * math.log(0.75), math.log(0.25)]))
    assert_close(batch_logps(logits, labels, average=True), torch.tensor([math.log(0.75), math.log(0.25)]))


def test_batch_logps_shape_mismatch_names_the_shapes():
    with pytest.raises(ValueError, match=r"\(2, 3, 5\).*\(2, 4\)"):
        batch_logps(torch.zeros(2, 3, 5), torch.zeros(2, 4, dtype=torch.long))


def test_sigmoid_loss_and_rewards():
    """β = 2, γ = 1. Pair 0: avg −1 vs −2: z = 2·(−1) − 2·(−2) − 1 = 1,
    loss = −logσ(1) = log(1 + e^−1) = 0.3132617. Pair 1: avg −3 vs −1: z = −6 + 2 − 1 = −5,
    loss = log(1 + e^5) = 5.0067153. Rewards β·avg: chosen [−2, −6], rejected [−4, −2]."""
    losses, chosen, rejected = simpo_loss(torch.tensor([-1.0, -3.0]), torch.tensor([-2.0, -1.0]), beta=2.0, gamma=1.0)
    assert_close(losses, torch.tensor([0.3132617, 5.0067153]))
    assert_close(chosen, torch.tensor([-2.0, -6.0]))
    assert_close(rejected, torch.tensor([-4.0, -2.0]))


def test_label_smoothing():
    """ε = 0.1 at z = 1: 0.9·log(1 + e^−1) + 0.1·log(1 + e) = log(1 + e^−1) + 0.1·1
    (since log(1 + e) − log(1 + e^−1) = 1) = 0.3132617 + 0.1 = 0.4132617."""
    losses, _, _ = simpo_loss(torch.tensor([-1.0]), torch.tensor([-2.0]), beta=2.0, gamma=1.0, label_smoothing=0.1)
    assert_close(losses, torch.tensor([0.4132617]))


def test_hinge_loss():
    """β = 1, γ = 0.5: z = Δ − 0.5. Δ = 2 → z = 1.5 → relu(−0.5) = 0; Δ = 1.25 → z = 0.75
    → 0.25; Δ = −0.5 → z = −1 → 2."""
    losses, _, _ = simpo_loss(torch.tensor([2.0, 1.25, -0.5]), torch.zeros(3), beta=1.0, gamma=0.5, loss_type="hinge")
    assert_close(losses, torch.tensor([0.0, 0.25, 2.0]))


def test_gradients_by_hand():
    """dL/dz = −σ(−z). At z = 0 (β = 2, γ = 1, avg −1 vs −1.5): σ(0) = 1/2, so
    dL/d chosen = β·(−1/2) = −1 and dL/d rejected = +1. With ε = 0.2:
    dL/dz = −0.8·σ(−z) + 0.2·σ(z) = −0.3, so the gradients are ∓0.6."""
    for smoothing, expected in ((0.0, 1.0), (0.2, 0.6)):
        chosen = torch.tensor([-1.0], requires_grad=True)
        rejected = torch.tensor([-1.5], requires_grad=True)
        losses, _, _ = simpo_loss(chosen, rejected, beta=2.0, gamma=1.0, label_smoothing=smoothing)
        losses.sum().backward()
        assert_close(chosen.grad, torch.tensor([-expected]))
        assert_close(rejected.grad, torch.tensor([expected]))


def test_rewards_are_detached():
    chosen = torch.tensor([-1.0], requires_grad=True)
    _, chosen_rewards, rejected_rewards = simpo_loss(chosen, torch.tensor([-2.0]), beta=2.0, gamma=1.0)
    assert not chosen_rewards.requires_grad and not rejected_rewards.requires_grad


def test_stable_at_z_minus_120():
    """Equal log-probs, β = 1, γ = 120: z = −120, −logσ(−120) = 120 + log(1 + e^−120) = 120;
    dL/dz = −σ(120) = −1, so the chosen gradient is −1, finite."""
    chosen = torch.tensor([-1.0], requires_grad=True)
    losses, _, _ = simpo_loss(chosen, torch.tensor([-1.0]), beta=1.0, gamma=120.0)
    losses.sum().backward()
    assert_close(losses, torch.tensor([120.0]))
    assert_close(chosen.grad, torch.tensor([-1.0]))


def test_simpo_loss_rejects_bad_inputs():
    with pytest.raises(ValueError, match=r"\(2,\) and \(3,\)"):
        simpo_loss(torch.zeros(2), torch.zeros(3), 2.0, 1.0)
    with pytest.raises(ValueError, match="sigmoid loss only"):
        simpo_loss(torch.zeros(2), torch.zeros(2), 2.0, 1.0, label_smoothing=0.1, loss_type="hinge")
    with pytest.raises(ValueError, match="loss_type"):
        simpo_loss(torch.zeros(2), torch.zeros(2), 2.0, 1.0, loss_type="ipo")


class _PadOnly:
    pad_token_id = 0


def _trainer(**config):
    return SimPOTrainer(torch.nn.Linear(1, 1), SimPOConfig(**config), tokenizer=_PadOnly())


def test_compute_loss_from_summed_logps_and_lengths():
    """Sums [−4, −3] over [4, 1] tokens → avg [−1, −3]; rejected [−6, −2] over [3, 2] → [−2, −1].
    β = 2, γ = 1: z = [1, −5], losses [0.3132617, 5.0067153], mean 2.6599885.
    With sft_weight 0.5 add 0.5 × (4 + 3)/(4 + 1) = 0.7 → 3.3599885."""
    args = (torch.tensor([-4.0, -3.0]), torch.tensor([-6.0, -2.0]), torch.tensor([4, 1]), torch.tensor([3, 2]))
    assert_close(_trainer().compute_loss(*args), torch.tensor(2.6599885))
    assert_close(_trainer(sft_weight=0.5).compute_loss(*args), torch.tensor(3.3599885))


def test_compute_loss_uses_gamma_beta_ratio():
    """β = 2.5, γ/β = 0.4 → γ = 1. One pair, avg −1 vs −1.4: z = 2.5·0.4 − 1 = 0,
    loss = log 2 = 0.6931472."""
    trainer = _trainer(beta=2.5, gamma_beta_ratio=0.4)
    loss = trainer.compute_loss(torch.tensor([-1.0]), torch.tensor([-1.4]), torch.tensor([1]), torch.tensor([1]))
    assert_close(loss, torch.tensor(math.log(2.0)))


def test_compute_loss_hinge():
    """β = 2, γ = 1, avg −1 vs −1.25: z = 0.5 − 1 = −0.5 → relu(1.5) = 1.5."""
    trainer = _trainer(loss_type="hinge")
    loss = trainer.compute_loss(torch.tensor([-2.0]), torch.tensor([-2.5]), torch.tensor([2]), torch.tensor([2]))
    assert_close(loss, torch.tensor(1.5))
