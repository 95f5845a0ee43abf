"""SimPO math in plain torch: per-sequence log-probs and the SimPO loss.

SimPO (Meng, Xia & Chen 2024) rewards a response by its length-normalised log-probability
under the policy, with no reference model:

    avg(y) = (1/|y|) Σ_t log π(y_t | x, y_<t)          (response tokens only)
    z      = β·avg(chosen) − β·avg(rejected) − γ
    sigmoid loss: −(1−ε)·logσ(z) − ε·logσ(−z)          (ε = label smoothing)
    hinge loss:   relu(1 − z)

The forward hands the loss a `PairLogps` (summed log-probs and token counts per pair); the
loss is a `SimPOLoss` built once from the config. Everything here is pure torch, so it can
be tested against numbers derived by hand.
"""

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import torch
import torch.nn.functional as F

from simpo_core.errors import ConfigError

if TYPE_CHECKING:
    from simpo_core.train.config import SimPOConfig

IGNORE_INDEX = -100  # label value of prompt and padding positions (PyTorch's convention)

LossType = Literal["sigmoid", "hinge"]

# TRL's names of the step metrics, in the order `step_metrics` returns them.
METRIC_NAMES = (
    "loss",
    "rewards/chosen",
    "rewards/rejected",
    "rewards/margins",
    "rewards/accuracies",
    "logps/chosen",
    "logps/rejected",
)


class LossSettingsError(ConfigError, ValueError):
    """A SimPO hyperparameter out of range: a ConfigError (the CLI prints it, and a config
    validator reports it under the field's path) that is also the ValueError torch-style callers expect."""


def check_loss_settings(
    beta: float,
    gamma: float,
    label_smoothing: float = 0.0,
    loss_type: str = "sigmoid",
    sft_weight: float = 0.0,
) -> None:
    """The one check of the loss hyperparameters (`SimPOConfig`, `SimPOLoss` and `simpo_loss` call it).

    Raises:
        LossSettingsError: a value out of range, an unknown loss type, or label smoothing with
            the hinge loss; the message names the value and the fix.
    """
    if not beta > 0:
        raise LossSettingsError(f"need beta > 0 (the reward scale β); got beta = {beta}")
    if not gamma >= 0:
        raise LossSettingsError(f"need gamma >= 0 (the target reward margin γ, absolute); got gamma = {gamma}")
    if not sft_weight >= 0:
        raise LossSettingsError(f"need sft_weight >= 0 (the weight of the SFT term); got sft_weight = {sft_weight}")
    if loss_type not in ("sigmoid", "hinge"):
        raise LossSettingsError(f"loss_type must be 'sigmoid' or 'hinge', got {loss_type!r}")
    if not 0.0 <= label_smoothing < 0.5:
        raise LossSettingsError(
            f"label_smoothing must be in [0, 0.5) (the probability that a label is flipped), got {label_smoothing}"
        )
    if loss_type == "hinge" and label_smoothing:
        raise LossSettingsError(
            "label_smoothing applies to the sigmoid loss only; set it to 0 for hinge, or use loss_type: sigmoid"
        )


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
        chosen_avg_logps: `(B,)` length-normalised log-probs of the chosen responses (summed
            ones for the "w/o LN" ablation, `SimPOLoss(length_normalize=False)`).
        rejected_avg_logps: `(B,)` the same for the rejected responses.
        beta: reward scale β (> 0).
        gamma: target reward margin γ, absolute (not divided by β).
        label_smoothing: ε in [0, 0.5); the probability that a label is flipped (sigmoid only).
        loss_type: "sigmoid" (the paper's) or "hinge".

    Returns:
        `(losses, chosen_rewards, rejected_rewards)`, each `(B,)`; the rewards are β·avg,
        detached.

    Raises:
        ValueError: the shapes differ.
        LossSettingsError: a hyperparameter is out of range (`check_loss_settings`; also a ValueError).
    """
    if chosen_avg_logps.shape != rejected_avg_logps.shape or chosen_avg_logps.dim() != 1:
        raise ValueError(
            "chosen and rejected log-probs must both be (B,); got "
            f"{tuple(chosen_avg_logps.shape)} and {tuple(rejected_avg_logps.shape)}"
        )
    check_loss_settings(beta, gamma, label_smoothing, loss_type)
    z = beta * (chosen_avg_logps - rejected_avg_logps) - gamma
    if loss_type == "sigmoid":
        # logsigmoid is stable: logσ(-120) = -120 exactly, where log(sigmoid) would give -inf.
        losses = -(1.0 - label_smoothing) * F.logsigmoid(z) - label_smoothing * F.logsigmoid(-z)
    else:  # hinge (the check above refused every other name)
        losses = torch.relu(1.0 - z)
    chosen_rewards = (beta * chosen_avg_logps).detach()
    rejected_rewards = (beta * rejected_avg_logps).detach()
    return losses, chosen_rewards, rejected_rewards


@dataclass(frozen=True)
class PairLogps:
    """What the forward hands to the loss, per pair of a batch of B pairs.

    Attributes:
        chosen: `(B,)` float32 summed log-probs of the chosen responses (differentiable in training).
        rejected: `(B,)` the same for the rejected responses.
        chosen_len: `(B,)` token counts of the chosen responses (≥ 1: the tokenizer refuses empty ones).
        rejected_len: `(B,)` token counts of the rejected responses.

    Raises:
        ValueError: the four tensors are not all `(B,)` with the same B.
    """

    chosen: torch.Tensor
    rejected: torch.Tensor
    chosen_len: torch.Tensor
    rejected_len: torch.Tensor

    def __post_init__(self) -> None:
        shapes = [tuple(t.shape) for t in (self.chosen, self.rejected, self.chosen_len, self.rejected_len)]
        if len(shapes[0]) != 1 or any(shape != shapes[0] for shape in shapes):
            raise ValueError(
                "chosen, rejected, chosen_len and rejected_len must all be (B,); got " + ", ".join(map(str, shapes))
            )

    def averages(self) -> tuple[torch.Tensor, torch.Tensor]:
        """`(chosen, rejected)` mean log-prob per response token, each `(B,)`: SimPO's length normalisation."""
        return self.chosen / self.chosen_len, self.rejected / self.rejected_len


class SimPOLoss(torch.nn.Module):
    """The SimPO objective with its hyperparameters fixed at construction (see `simpo_loss`).

    Args:
        beta: reward scale β (> 0).
        gamma: target reward margin γ, absolute (≥ 0).
        loss_type: "sigmoid" (the paper's) or "hinge".
        label_smoothing: ε in [0, 0.5), sigmoid only.
        sft_weight: weight (≥ 0) of the token-mean NLL of the chosen responses added by `step_loss`.
        length_normalize: reward = β × mean token log-prob when True (SimPO); β × summed log-prob
            when False (the paper's "w/o LN" ablation). The SFT term is a token mean either way.

    Raises:
        LossSettingsError: a value out of range, an unknown loss type, or label smoothing with
            hinge (`check_loss_settings`; also a ValueError).
    """

    def __init__(
        self,
        beta: float = 2.0,
        gamma: float = 1.0,
        loss_type: LossType = "sigmoid",
        label_smoothing: float = 0.0,
        sft_weight: float = 0.0,
        length_normalize: bool = True,
    ) -> None:
        super().__init__()
        check_loss_settings(beta, gamma, label_smoothing, loss_type, sft_weight)
        self.beta, self.gamma, self.loss_type = beta, gamma, loss_type
        self.label_smoothing, self.sft_weight = label_smoothing, sft_weight
        self.length_normalize = length_normalize

    @classmethod
    def from_config(cls, config: "SimPOConfig") -> "SimPOLoss":
        """The loss a `SimPOConfig` describes (its `gamma` already reflects `gamma_beta_ratio`)."""
        return cls(
            config.beta,
            config.gamma,
            config.loss_type,
            config.label_smoothing,
            config.sft_weight,
            config.length_normalize,
        )

    def forward(self, logps: PairLogps) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-pair SimPO losses and rewards of a batch.

        Args:
            logps: `(B,)` summed log-probs and token counts.

        Returns:
            `(losses, chosen_rewards, rejected_rewards)`, each `(B,)`; the rewards (β × mean
            token log-prob, or β × summed log-prob without length normalisation) are detached.
        """
        chosen, rejected = logps.averages() if self.length_normalize else (logps.chosen, logps.rejected)
        return simpo_loss(chosen, rejected, self.beta, self.gamma, self.label_smoothing, self.loss_type)

    def step_loss(
        self, losses: torch.Tensor, logps: PairLogps, n_pairs: int, n_chosen_tokens: int | torch.Tensor
    ) -> torch.Tensor:
        """These pairs' share of an optimizer step's loss.

        Args:
            losses: `(B,)` from `forward(logps)`.
            logps: the same batch (its chosen sums give the SFT term).
            n_pairs, n_chosen_tokens: pairs and chosen tokens of the whole step. Each
                micro-batch (and process) divides by the step's counts, so the shares add up
                to the loss of the whole step computed at once.

        Returns:
            Scalar `Σ losses / n_pairs + sft_weight · (−Σ chosen log-probs) / n_chosen_tokens`.
        """
        loss = losses.sum() / n_pairs
        if self.sft_weight:
            loss = loss + self.sft_weight * -logps.chosen.sum() / n_chosen_tokens
        return loss


@torch.no_grad()
def step_metrics(
    loss: torch.Tensor,
    logps: PairLogps,
    chosen_rewards: torch.Tensor,
    rejected_rewards: torch.Tensor,
    n_pairs: int,
) -> dict[str, float]:
    """These pairs' share of a step's TRL-named metrics (`METRIC_NAMES`), read with one host sync.

    Args:
        loss: scalar from `SimPOLoss.step_loss` (already a share of the step).
        logps: the batch's `(B,)` log-probs and token counts.
        chosen_rewards, rejected_rewards: `(B,)` detached, from `SimPOLoss.forward`.
        n_pairs: pairs of the whole step.

    Returns:
        `loss`, then `rewards/{chosen,rejected,margins,accuracies}` and `logps/{chosen,rejected}`
        (mean token log-probs), each summed over the batch and divided by `n_pairs`. Accuracy
        counts strict wins.
    """
    chosen_avg, rejected_avg = logps.averages()
    margins = chosen_rewards - rejected_rewards
    sums = [chosen_rewards.sum(), rejected_rewards.sum(), margins.sum(), (margins > 0).sum()]
    # One device-to-host copy instead of an `.item()` (and a wait on the device) per metric;
    # the win count becomes float32 exactly.
    values = torch.stack([loss, *sums, chosen_avg.sum(), rejected_avg.sum()]).tolist()
    return {"loss": values[0], **{name: value / n_pairs for name, value in zip(METRIC_NAMES[1:], values[1:])}}
