"""SimPO math in plain torch: per-sequence log-probs and the SimPO loss.

SimPO (Meng, Xia & Chen 2024) rewards a response by its length-normalised log-probability
under the policy, with no reference model:

    avg(y) = (1/|y|) Σ_t log π(y_t | x, y_<t)          (response tokens only)
    z      = β·avg(chosen) − β·avg(rejected) − γ
    sigmoid loss: −(1−ε)·logσ(z) − ε·logσ(−z)          (ε = label smoothing)
    hinge loss:   relu(1 − z)

Everything here is a pure function of tensors and scalars, so it can be tested against
numbers derived by hand.
"""

from typing import Literal

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100  # label value of prompt and padding positions (PyTorch's convention)

LossType = Literal["sigmoid", "hinge"]


def batch_logps(logits: torch.Tensor, labels: torch.Tensor, average: bool = True) -> torch.Tensor:
    """Log-probability of each sequence's labelled tokens, summed or averaged per sequence.

    Args:
        logits: `(B, T, V)` model outputs; position t predicts token t + 1.
        labels: `(B, T)` token ids aligned with `input_ids` (this function shifts them by
            one); `IGNORE_INDEX` (-100) marks positions that do not count (prompt, padding).
        average: mean over the labelled tokens (SimPO's length normalisation) when True,
            their sum when False.

    Returns:
        `(B,)` float32 log-probabilities. A sequence with no labelled token gets 0 (sum)
        or 0 (average); the tokenizer refuses such sequences before they get here.

    Raises:
        ValueError: `logits` is not 3-D, or its first two dimensions differ from `labels`.
    """
    if logits.dim() != 3 or logits.shape[:2] != labels.shape:
        raise ValueError(
            f"logits must be (B, T, V) and labels (B, T) with the same B and T; "
            f"got logits {tuple(logits.shape)} and labels {tuple(labels.shape)}"
        )
    logits = logits[:, :-1, :].float()
    labels = labels[:, 1:]
    mask = labels != IGNORE_INDEX
    safe_labels = labels.masked_fill(~mask, 0)  # any valid id; masked out below
    token_logps = torch.gather(logits.log_softmax(-1), 2, safe_labels.unsqueeze(2)).squeeze(2)
    sums = (token_logps * mask).sum(-1)
    if not average:
        return sums
    return sums / mask.sum(-1).clamp(min=1)


def simpo_loss(
    chosen_avg_logps: torch.Tensor,
    rejected_avg_logps: torch.Tensor,
    beta: float,
    gamma: float,
    label_smoothing: float = 0.0,
    loss_type: LossType = "sigmoid",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-pair SimPO loss and the implicit rewards.

    Args:
        chosen_avg_logps: `(B,)` length-normalised log-probs of the chosen responses.
        rejected_avg_logps: `(B,)` the same for the rejected responses.
        beta: reward scale β (> 0).
        gamma: target reward margin γ, absolute (not divided by β).
        label_smoothing: ε in [0, 0.5); the probability that a label is flipped (sigmoid only).
        loss_type: "sigmoid" (the paper's) or "hinge".

    Returns:
        `(losses, chosen_rewards, rejected_rewards)`, each `(B,)`; the rewards are β·avg,
        detached.

    Raises:
        ValueError: shapes differ, or an unknown loss type or a bad ε is given.
    """
    if chosen_avg_logps.shape != rejected_avg_logps.shape or chosen_avg_logps.dim() != 1:
        raise ValueError(
            "chosen and rejected log-probs must both be (B,); got "
            f"{tuple(chosen_avg_logps.shape)} and {tuple(rejected_avg_logps.shape)}"
        )
    if not 0.0 <= label_smoothing < 0.5:
        raise ValueError(f"label_smoothing must be in [0, 0.5), got {label_smoothing}")
    z = beta * (chosen_avg_logps - rejected_avg_logps) - gamma
    if loss_type == "sigmoid":
        # logsigmoid is stable: logσ(-120) = -120 exactly, where log(sigmoid) would give -inf.
        losses = -(1.0 - label_smoothing) * F.logsigmoid(z) - label_smoothing * F.logsigmoid(-z)
    elif loss_type == "hinge":
        if label_smoothing:
            raise ValueError("label_smoothing applies to the sigmoid loss only; set it to 0 for hinge")
        losses = torch.relu(1.0 - z)
    else:
        raise ValueError(f"loss_type must be 'sigmoid' or 'hinge', got {loss_type!r}")
    chosen_rewards = (beta * chosen_avg_logps).detach()
    rejected_rewards = (beta * rejected_avg_logps).detach()
    return losses, chosen_rewards, rejected_rewards


def sft_nll(chosen_logps_sum: torch.Tensor, chosen_lengths: torch.Tensor) -> torch.Tensor:
    """Token-mean negative log-likelihood of the chosen responses (the optional SFT term).

    Args:
        chosen_logps_sum: `(B,)` summed log-probs of the chosen responses.
        chosen_lengths: `(B,)` their token counts.

    Returns:
        Scalar: −Σ logps / Σ lengths, i.e. the mean over every chosen token of the batch.
    """
    return -chosen_logps_sum.sum() / chosen_lengths.sum().clamp(min=1)


def simpo_objective(
    out: dict[str, torch.Tensor],
    *,
    beta: float,
    gamma: float,
    label_smoothing: float = 0.0,
    loss_type: LossType = "sigmoid",
    sft_weight: float = 0.0,
    n_pairs: int | None = None,
    n_chosen_tokens: int | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The training objective of a batch and its TRL-named metrics, from summed log-probs.

    Args:
        out: `chosen_logps`, `rejected_logps` (`(B,)` summed response log-probs) and
            `chosen_lengths`, `rejected_lengths` (`(B,)` response token counts).
        beta, gamma, label_smoothing, loss_type: as in `simpo_loss`.
        sft_weight: weight of the token-mean NLL of the chosen responses.
        n_pairs, n_chosen_tokens: the divisors; default to this batch's. A micro-batch of a
            larger step passes the step's counts, so that the sum over its micro-batches
            equals the loss (and metrics) of the whole step computed at once.

    Returns:
        `(loss, metrics)`: scalar loss (sum of pair losses / n_pairs, plus the SFT term) and
        `loss`, `rewards/{chosen,rejected,margins,accuracies}`, `logps/{chosen,rejected}`,
        each summed over the batch and divided by `n_pairs`. Accuracy counts strict wins.
    """
    n_pairs = n_pairs or out["chosen_logps"].shape[0]
    chosen_avg = out["chosen_logps"] / out["chosen_lengths"]
    rejected_avg = out["rejected_logps"] / out["rejected_lengths"]
    losses, chosen_rewards, rejected_rewards = simpo_loss(
        chosen_avg, rejected_avg, beta, gamma, label_smoothing, loss_type
    )
    loss = losses.sum() / n_pairs
    if sft_weight:
        tokens = n_chosen_tokens or out["chosen_lengths"].sum().clamp(min=1)
        loss = loss + sft_weight * -out["chosen_logps"].sum() / tokens
    margins = chosen_rewards - rejected_rewards
    metrics = {
        "loss": loss.item(),
        "rewards/chosen": chosen_rewards.sum().item() / n_pairs,
        "rewards/rejected": rejected_rewards.sum().item() / n_pairs,
        "rewards/margins": margins.sum().item() / n_pairs,
        "rewards/accuracies": (margins > 0).sum().item() / n_pairs,
        "logps/chosen": chosen_avg.detach().sum().item() / n_pairs,
        "logps/rejected": rejected_avg.detach().sum().item() / n_pairs,
    }
    return loss, metrics
