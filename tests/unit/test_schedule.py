"""The learning-rate schedule against values derived by hand, and the LambdaLR that applies it."""

import pytest
import torch

from simpo_core.train.schedule import lr_multiplier, warmup_decay_schedule

STEPS = [0, 1, 2, 4, 6, 8, 10]


@pytest.mark.parametrize(
    "scheduler, expected",
    [
        ("linear", [0.0, 0.5, 1.0, 0.75, 0.5, 0.25, 0.0]),
        ("cosine", [0.0, 0.5, 1.0, 0.8535534, 0.5, 0.1464466, 0.0]),
        ("constant", [0.0, 0.5, 1.0, 1.0, 1.0, 1.0, 1.0]),
    ],
)
def test_warmup_then_decay(scheduler, expected):
    """10 steps, warmup_ratio 0.2 → ceil(2.0) = 2 warmup steps: 0/2, 1/2, then the decay over
    the 8 steps left, progress p = (s − 2)/8. Linear 1 − p; cosine (1 + cos πp)/2, e.g.
    s = 4: p = 1/4 → (1 + √2/2)/2 = 0.8535534; s = 8: p = 3/4 → (1 − √2/2)/2 = 0.1464466."""
    assert [lr_multiplier(s, 10, 0.2, scheduler) for s in STEPS] == pytest.approx(expected)


def test_warmup_rounds_up_and_the_decay_holds_after_the_last_step():
    """7 steps, warmup_ratio 0.1 → ceil(0.7) = 1 warmup step: 0 at step 0, then linear decay
    over 6 steps: step 4 → 1 − 3/6 = 0.5; step 9 (past the end) stays at 0."""
    assert lr_multiplier(0, 7, 0.1, "linear") == 0.0
    assert lr_multiplier(4, 7, 0.1, "linear") == pytest.approx(0.5)
    assert lr_multiplier(9, 7, 0.1, "linear") == 0.0


def test_no_warmup_starts_at_the_peak():
    assert lr_multiplier(0, 10, 0.0, "cosine") == 1.0
    assert lr_multiplier(5, 10, 0.0, "cosine") == pytest.approx(0.5)  # (1 + cos π/2)/2


def test_the_lambda_scheduler_steps_through_the_same_values():
    """peak lr 0.1, 4 steps, warmup_ratio 0.5 → 2 warmup steps, then linear over 2:
    lr 0, 0.05, 0.1, 0.05, 0."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    scheduler = warmup_decay_schedule(optimizer, 4, 0.5, "linear")
    rates = []
    for _ in range(5):
        rates.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    assert rates == pytest.approx([0.0, 0.05, 0.1, 0.05, 0.0])
