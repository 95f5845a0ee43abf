"""SimPOTrainer: exact SimPO, one forward per micro-batch, resumable, optional LoRA.

Reads top to bottom: setup (datasets encoded once, so bad rows fail before training; the
loss built once from the config), the objective, one optimizer step, the training loop,
evaluation, saving. Which pairs a step sees is `data_order`'s, what the run reports and to
whom `run_record`'s, where checkpoints go and how a run resumes `checkpointer`'s.

Under torchrun each process takes a contiguous share of every step's pairs, and gradients and
metrics are summed across processes (DDP or FSDP2, `parallel`): the same steps as one process.
"""

import logging
import math
from collections.abc import Sequence
from contextlib import nullcontext
from typing import Any

import torch

from simpo_core import threads
from simpo_core.errors import ConfigError, SimpoError
from simpo_core.rng import TrainingRng, draws_randomness
from simpo_core.train import checkpoint, distributed, packing, precision
from simpo_core.train.checkpointer import Checkpointer
from simpo_core.train.config import SimPOConfig
from simpo_core.train.data_order import DataOrder
from simpo_core.train.events import TrainerEvents, checked_listeners
from simpo_core.train.logps import collate_for, model_device
from simpo_core.train.loss import METRIC_NAMES, PairLogps, SimPOLoss, step_metrics
from simpo_core.train.parallel import Parallel
from simpo_core.train.run_record import RunRecord
from simpo_core.train.setup import build_optimizer, prepare_model
from simpo_core.train.tokenization import EncodedPair, encode_pairs, rows_from

logger = logging.getLogger(__name__)


class TrainingDivergedError(SimpoError):
    """The loss or gradient norm became NaN or infinite."""


class SimPOTrainer:
    """Train a causal LM with SimPO.

    Args:
        model: a transformers causal LM (or a peft model).
        config: hyperparameters; `config.lora` wraps the model in LoRA adapters.
        tokenizer: the model's tokenizer (pad token required).
        train_dataset, eval_dataset: list of dicts, pandas DataFrame or datasets.Dataset in
            the canonical or flat layout.
        callbacks: listeners (`simpo_core.train.events.TrainerEvents`): their `on_log`, `on_eval`,
            `on_checkpoint`, `on_end`, `on_warning` (the margin monitor, `simpo_core.train.monitor`)
            and `on_early_stop` run in the main process as training goes.
        device: where to train (`auto`, `cpu`, `cuda`, `cuda:N`); None keeps a GPU model where
            it is and moves a CPU model to the GPU when there is one.

    Whatever dtype the model arrives in, it trains under `config.precision`
    (`simpo_core.train.precision`): a bf16 checkpoint gets float32 master weights unless
    `bf16-pure` is asked for, and `save_model` writes it back in `config.save_dtype`.

    Raises:
        ConfigError: no tokenizer, no pad token, nothing trainable, or a callback that is not
            a `TrainerEvents`.
        DataError: a row is not a pair or a response is empty after truncation.
    """

    def __init__(
        self,
        model: Any,
        config: SimPOConfig | None = None,
        tokenizer: Any = None,
        train_dataset: Any = None,
        eval_dataset: Any = None,
        callbacks: Sequence[TrainerEvents] | None = None,
        device: str | None = None,
    ) -> None:
        self.config = config or SimPOConfig()
        if tokenizer is None or tokenizer.pad_token_id is None:
            raise ConfigError(
                "SimPOTrainer needs the model's tokenizer with a pad token; load both with load_model_and_tokenizer"
            )
        self.tokenizer = tokenizer
        self.callbacks = checked_listeners(callbacks)
        self.world_size = distributed.init_distributed()
        self.rank = distributed.rank()
        self.checkpoint_dtype = precision.floating_dtype(model)  # what save_dtype "checkpoint" writes
        # Its own generator states: trainings in threads of one process share torch's (`rng`).
        self.rng = TrainingRng(self.config.seed)
        with self.rng.drawing():  # adapter initialisation seeds every generator
            self.model, self.precision = prepare_model(model, self.config, device)
        self._draws = draws_randomness(self.model)  # dropout: training steps draw from self.rng
        self.num_threads = threads.apply_num_threads(self.config.num_threads, self.model)  # before any step
        packing.set_packed_attention_backend(self.config.packed_attention)
        self.fallbacks_before = packing.packed_attention_fallbacks()  # the process-wide count so far
        self.resumed_from_step: int | None = None  # set when train(resume=True) finds a checkpoint
        self.loss_fn = SimPOLoss.from_config(self.config)
        self.parallel = Parallel(self.model, self.config.strategy, self.precision, self.config.fsdp_cpu_offload)
        self.train_pairs = self._encode(train_dataset)
        self.eval_pairs = self._encode(eval_dataset)
        self.data_order = DataOrder(len(self.train_pairs), self.config)
        self.optimizer: torch.optim.Optimizer | None = None
        self.scheduler: torch.optim.lr_scheduler.LambdaLR | None = None
        self.global_step = 0
        self.record = RunRecord(self.config, self.callbacks, is_main=self.rank == 0)
        self.checkpointer = Checkpointer(self.config, self.parallel, self.rank)

    # --- setup ---------------------------------------------------------------------------
    def _encode(self, dataset: Any) -> list[EncodedPair]:
        return encode_pairs(self.tokenizer, rows_from(dataset), self.config.max_length, self.config.max_prompt_length)

    @property
    def device(self) -> torch.device:
        return model_device(self.model)

    def total_steps(self) -> int:
        """Optimizer steps of this run: max_steps, or num_epochs worth of micro-batches."""
        return self.data_order.total_steps()

    @property
    def history(self) -> list[dict[str, float]]:  # what the run has reported is `run_record`'s
        return self.record.history

    @property
    def last_metrics(self) -> dict[str, float]:
        return self.record.last_metrics

    @property
    def stopped_early_at_step(self) -> int | None:
        return self.record.stopped_early_at_step

    # --- the objective -------------------------------------------------------------------
    def compute_loss(
        self,
        chosen_logps: torch.Tensor,
        rejected_logps: torch.Tensor,
        chosen_len: torch.Tensor,
        rejected_len: torch.Tensor,
    ) -> torch.Tensor:
        """Mean SimPO loss (plus the SFT term when `sft_weight` > 0) of a batch.

        Args:
            chosen_logps, rejected_logps: `(B,)` summed response log-probs.
            chosen_len, rejected_len: `(B,)` response token counts.

        Returns:
            Scalar tensor, differentiable with respect to the log-probs.

        Raises:
            ValueError: the four tensors are not all `(B,)`.
        """
        logps = PairLogps(chosen_logps, rejected_logps, chosen_len, rejected_len)
        losses, _, _ = self.loss_fn(logps)
        return self.loss_fn.step_loss(losses, logps, len(losses), chosen_len.sum().clamp(min=1))

    # --- one optimizer step --------------------------------------------------------------
    def _accumulate(self, pairs: Sequence[EncodedPair], backward: bool) -> dict[str, float]:
        """Forward (and backward) every micro-batch of this process's share of `pairs`; return
        the metrics of all of `pairs` (summed over processes; gradients too)."""
        size = self.config.batch_size if backward else self.config.eval_batch_size
        # Divisors of the whole step, the same on every process.
        n_pairs, n_tokens = len(pairs), sum(len(p.chosen_ids) for p in pairs)
        totals = dict.fromkeys(METRIC_NAMES, 0.0)
        micro_batches = self.parallel.micro_batches(pairs, size)
        for index, (micro_pairs, counts) in enumerate(micro_batches):
            batch = collate_for(self.model, micro_pairs, self.tokenizer.pad_token_id)
            last = index == len(micro_batches) - 1
            autocast = precision.autocast(self.precision, self.device)
            with autocast, self._grad_or_rng(backward), self.parallel.gradient_sync(last):
                logps = self.parallel.pair_logps({k: v.to(self.device) for k, v in batch.items()})
                losses, chosen_rewards, rejected_rewards = self.loss_fn(logps)
                loss = self.loss_fn.step_loss(losses, logps, n_pairs, n_tokens) * (1.0 if counts else 0.0)
                shares = step_metrics(loss, logps, chosen_rewards, rejected_rewards, n_pairs)
                if self.world_size == 1 and not math.isfinite(shares["loss"]):
                    self._diverged(f"the loss is {shares['loss']}")
                if backward:
                    loss.backward()
            if counts:
                for key, value in shares.items():
                    totals[key] += value
        totals = distributed.sum_metrics(totals, self.device)
        if not math.isfinite(totals["loss"]):  # every process sees the same sum and stops together
            self._diverged(f"the loss is {totals['loss']}")
        return totals

    def _grad_or_rng(self, backward: bool) -> Any:
        """Evaluation: no gradients. Training: dropout draws from this training's generators."""
        if not backward:
            return torch.no_grad()
        return self.rng.drawing(self.device) if self._draws else nullcontext()

    def _optimizer_step(self, pairs: Sequence[EncodedPair]) -> dict[str, float]:
        lr = self.scheduler.get_last_lr()[0]
        metrics = self._accumulate(pairs, backward=True)
        params = list(checkpoint.trainable_parameters(self.model).values())
        max_norm = self.config.max_grad_norm or float("inf")
        grad_norm = self.parallel.clip_gradients(params, max_norm)
        if not math.isfinite(grad_norm):
            self._diverged(f"the gradient norm is {grad_norm}")
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return {**metrics, "grad_norm": grad_norm, "lr": lr}

    def _diverged(self, what: str) -> None:
        raise TrainingDivergedError(
            f"training diverged at step {self.global_step + 1}: {what}. "
            f"Last logged metrics: {self.last_metrics or 'none yet'}. Lower lr, keep max_grad_norm set, or check the data."
        )

    def train_step(self, batch: Sequence[Any]) -> float:
        """One optimizer step on `batch` (rows or encoded pairs), split into micro-batches of
        `batch_size` whose gradients accumulate. Returns the step's loss."""
        batch = list(batch)
        pairs = batch if all(isinstance(p, EncodedPair) for p in batch) else self._encode(batch)
        if self.optimizer is None:
            self.optimizer, self.scheduler = build_optimizer(self.model, self.config, max(self.total_steps(), 1))
        self.model.train()
        metrics = self._optimizer_step(pairs)
        self.global_step += 1
        return metrics["loss"]

    # --- the training loop ---------------------------------------------------------------
    def train(self, resume: bool = False) -> list[dict[str, float]]:
        """Run training; return the history of logged (and eval_-prefixed) metrics.

        Args:
            resume: continue from the newest complete checkpoint in `output_dir` (starts
                fresh, with a warning, when there is none).
        """
        total = self.total_steps()
        if total > 0 and not self.train_pairs:
            raise ConfigError("train_dataset is empty; give SimPOTrainer at least one pair or set max_steps: 0")
        self.optimizer, self.scheduler = build_optimizer(self.model, self.config, max(total, 1))
        self.rng.reset()  # dropout starts from the seed
        self.global_step = 0
        self.record.reset()
        if resume:
            with self.rng.drawing():  # the checkpoint restores every generator: into this training's states
                state = self.checkpointer.load_latest(self.model, self.optimizer, self.scheduler)
            if state is not None:
                self.global_step = self.resumed_from_step = state["step"]
                self.record.load_state_dict(state)
        pairs, per_step = len(self.train_pairs), self.config.effective_batch_size
        logger.info("training %d steps (%d pairs, %d per step, lr %g)", total, pairs, per_step, self.config.lr)
        self.model.train()
        while self.global_step < total and self.stopped_early_at_step is None:
            indices, epoch = self.data_order.step_indices(self.global_step)
            metrics = self._optimizer_step([self.train_pairs[i] for i in indices])
            self.global_step, self.record.epoch = self.global_step + 1, round(epoch, 4)
            self.record.window.add(metrics)
            if self.global_step % self.config.logging_steps == 0 or self.global_step == total:
                self.record.log(self.global_step, total)
            if self.config.eval_steps and self.global_step % self.config.eval_steps == 0 and self.eval_pairs:
                self._record_eval(watch=True)
            if self.config.save_steps and self.global_step % self.config.save_steps == 0:
                self.save_checkpoint()
        periodic_eval_at_end = self.config.eval_steps and total and total % self.config.eval_steps == 0
        if self.eval_pairs and self.stopped_early_at_step is None and not periodic_eval_at_end:
            self._record_eval()
        self.record.ended(self.global_step)
        return self.history

    def _record_eval(self, watch: bool = False) -> None:
        """Evaluate and report; a periodic evaluation (`watch`) also feeds the monitor, which may stop training."""
        lr = self.scheduler.get_last_lr()[0] if self.scheduler else self.config.lr
        entry = self.record.evaluated(self.global_step, lr, self.evaluate())
        if watch:
            self.record.watch(entry, self.global_step, self.total_steps())

    # --- evaluation ----------------------------------------------------------------------
    def evaluate(self, dataset: Any = None) -> dict[str, float]:
        """SimPO metrics on `dataset` (or the eval_dataset), `eval_`-prefixed, in eval mode.

        Raises:
            ConfigError: neither a dataset nor an eval_dataset was given.
        """
        pairs = self._encode(dataset) if dataset is not None else self.eval_pairs
        if not pairs:
            raise ConfigError("nothing to evaluate: pass a dataset or give SimPOTrainer an eval_dataset")
        was_training = self.model.training
        self.model.eval()
        try:
            metrics = self._accumulate(pairs, backward=False)
        finally:
            self.model.train(was_training)
        return {f"eval_{key}": value for key, value in metrics.items()}

    # --- saving and resuming (`checkpointer`) --------------------------------------------
    def save_checkpoint(self) -> None:
        """Write `output_dir/checkpoint-<step>`: weights, optimizer, schedule, generators and the run's record."""
        state = {**self.record.state_dict(), "config": self.config.model_dump(mode="json")}
        with self.rng.drawing(self.device):  # the checkpoint records this training's generator state
            self.checkpointer.save(self.global_step, self.model, self.optimizer, self.scheduler, state)
        distributed.barrier()
        self.record.checkpointed(self.global_step)

    def save_model(self, path: str | None = None) -> str:
        """Write the model (safetensors) and tokenizer to `path` (default `output_dir/final`).

        With LoRA: the adapter, or, when `lora.merge_on_save`, the merged full model plus
        the adapter in `path/adapter`. Full weights are written in `config.save_dtype` (the
        starting checkpoint's dtype by default). Returns the path.
        """
        return self.checkpointer.save_model(self.model, self.tokenizer, path, self.checkpoint_dtype)
