"""Supervised fine-tuning (SFT): the stage a model goes through before SimPO.

SimPO is applied to SFT models: the SFT stage teaches the answer format, the preference
pairs then teach quality. `sft_train` is that stage in one loop: the token-mean negative
log-likelihood of the response tokens (prompt tokens masked), AdamW with warmup and decay,
gradient clipping. Prompts render exactly as in SimPO training and serving
(`prompt_format.render_prompt_ids`), so the format carries over; batches are packed without
padding where the model allows it (`packing`), and the output head runs in chunks on
response positions only (`logps.sequence_logps`), as in SimPO training.

`SFTSettings` (`sft_settings`) holds every default; the embedded `tiny` model's SFT build uses them as they
are (`tiny_sft`).
"""

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from simpo_core.data.schema import prompt_to_messages
from simpo_core.errors import ConfigError, DataError
from simpo_core.train.events import TrainerEvents
from simpo_core.train.packing import pack_sequences
from simpo_core.train.prompt_format import render_prompt_ids
from simpo_core.train.schedule import warmup_decay_schedule
from simpo_core.train.sft_settings import SFTJob, SFTSettings
from simpo_core.train.tokenization import pad_sequences, response_ids, truncate_pair

logger = logging.getLogger(__name__)


@dataclass
class SFTResult:
    """What `sft_train` returns: the trained model (trained in place) and its loss curve.

    Attributes:
        model: the same model object, trained, in eval mode.
        history: one `{"step", "loss", "lr"}` per logged step (the loss averaged since the last log).
        seconds: wall time of the loop.
    """

    model: Any
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def final_loss(self) -> float | None:
        return self.history[-1]["loss"] if self.history else None


def encode_rows(
    tokenizer: Any, rows: Sequence[Mapping[str, Any]], max_length: int, max_prompt_length: int
) -> list[tuple[list[int], list[int]]]:
    """`(prompt ids, response ids + EOS)` per row, truncated as SimPO training truncates pairs.

    Raises:
        DataError: a row lacks `prompt`/`response`, or its answer has no token left.
    """
    encoded = []
    for index, row in enumerate(rows):
        try:
            prompt = render_prompt_ids(tokenizer, prompt_to_messages(row["prompt"]))
            response = response_ids(tokenizer, row["response"])
        except (KeyError, TypeError) as error:
            raise DataError(f"SFT row {index}: needs 'prompt' and 'response' ({error})") from None
        prompt, response, _ = truncate_pair(
            prompt, response, response, max_length, max_prompt_length, tokenizer.bos_token_id is not None
        )
        if not response:
            raise DataError(
                f"SFT row {index}: the answer is empty after truncation (max_length {max_length}, "
                f"max_prompt_length {max_prompt_length}); lower max_prompt_length or raise max_length"
            )
        encoded.append((prompt, response))
    return encoded


def collate_rows(examples: Sequence[tuple[list[int], list[int]]], packed: bool, pad_token_id: int) -> dict:
    """One batch of N rows: packed end to end `(1, L)` with `position_ids` and `cu_seq_lens`
    (`packing.pack_pairs`' layout), or right-padded `(N, T)` with `attention_mask`.
    `labels` are the response tokens, `IGNORE_INDEX` on prompt and padding."""
    return pack_sequences(examples) if packed else pad_sequences(examples, pad_token_id)


def sft_train(
    model: Any,
    tokenizer: Any,
    rows: Sequence[Mapping[str, Any]],
    settings: SFTSettings | None = None,
    callbacks: Sequence[TrainerEvents] = (),
) -> SFTResult:
    """Fine-tune `model` on prompt/response rows (next-token NLL of the responses).

    Args:
        model: a transformers causal LM (all weights train), on any device.
        tokenizer: its tokenizer, with a pad token.
        rows: `{"prompt": str or messages, "response": str}` (see `data.sft_data`).
        settings: hyperparameters; `SFTSettings()` when None.
        callbacks: listeners whose `on_log(step, {"step", "loss", "lr"})` runs at every logged step.

    Returns:
        `SFTResult` with the model trained in place (in eval mode) and the loss curve.

    Raises:
        DataError: no rows, or a row that cannot be encoded.
        ConfigError: no pad token, or nothing trainable.
        FloatingPointError: the loss became NaN or infinite (the step is named).
    """
    from simpo_core.train.logps import _has_linear_head, model_device, packed_attention, sequence_logps
    from simpo_core.train.packing import is_packed_ready

    settings = settings or SFTSettings()
    if not rows:
        raise DataError("no SFT rows to train on; give a file with prompt/response or preference rows")
    if tokenizer.pad_token_id is None:
        raise ConfigError("the tokenizer has no pad token; load it with load_model_and_tokenizer")
    examples = encode_rows(tokenizer, rows, settings.max_length, settings.max_prompt_length)
    optimizer, scheduler = _optimizer(model, settings)
    order = torch.Generator().manual_seed(settings.seed)
    queue: list[int] = []
    result, window = SFTResult(model), []
    started = time.monotonic()
    model.train()
    with packed_attention(model):
        packed = is_packed_ready(model) and _has_linear_head(model)  # as `logps.collate_for` decides
        for step in range(1, settings.max_steps + 1):
            while len(queue) < settings.batch_size:  # epochs follow one another, each a fresh permutation
                queue += torch.randperm(len(examples), generator=order).tolist()
            batch_rows, queue = [examples[i] for i in queue[: settings.batch_size]], queue[settings.batch_size :]
            batch = collate_rows(batch_rows, packed, tokenizer.pad_token_id)
            batch = {name: tensor.to(model_device(model)) for name, tensor in batch.items()}
            sums, lengths = sequence_logps(model, batch)
            loss = -sums.sum() / lengths.sum().clamp(min=1)  # token-mean NLL over the batch
            if not torch.isfinite(loss):
                raise FloatingPointError(f"SFT loss is {loss.item()} at step {step}; lower lr or check the data")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if settings.max_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), settings.max_grad_norm)
            optimizer.step()
            scheduler.step()
            window.append(loss.item())
            if step % settings.logging_steps == 0 or step == settings.max_steps:
                entry = {"step": step, "loss": sum(window) / len(window), "lr": scheduler.get_last_lr()[0]}
                result.history.append(entry)
                window = []
                logger.info("sft step %d/%d: loss %.4f", step, settings.max_steps, entry["loss"])
                for listener in callbacks:
                    listener.on_log(step, dict(entry))
    model.eval()
    result.seconds = time.monotonic() - started
    return result


def _optimizer(model: Any, settings: SFTSettings) -> tuple[Any, Any]:
    """The SimPO trainer's AdamW and warmup + decay schedule, with the SFT settings."""
    from simpo_core.train.checkpoint import trainable_parameters
    from simpo_core.train.setup import build_adamw

    if not trainable_parameters(model):
        raise ConfigError("the model has no trainable parameters; unfreeze it before SFT")
    optimizer = build_adamw(model, settings.lr, settings.weight_decay)
    total = max(settings.max_steps, 1)
    return optimizer, warmup_decay_schedule(optimizer, total, settings.warmup_ratio, settings.lr_scheduler)


def run_sft_job(job: SFTJob) -> dict[str, Any]:
    """Read the rows, load the model (float32), fine-tune it, save it with its provenance.

    The output folder loads like any hub model (`simpo run --set model.source=FOLDER`) and
    names its starting model (`simpo_provenance.json`); `sft_run.json` records the job, the
    data's SHA-256 and the loss curve.

    Returns:
        The summary: `output_dir`, `model`, `rows`, `steps`, `final_loss`, `seconds`, `data_sha256`.

    Raises:
        DataError, ConfigError: unreadable data or model (the message says what to fix).
    """
    import json

    from simpo_core.data.sft_data import read_sft_file
    from simpo_core.models import load_model_and_tokenizer, write_provenance
    from simpo_core.train.checkpoint import save_model_atomic

    rows, data_sha256 = read_sft_file(job.data)
    model, tokenizer = load_model_and_tokenizer(
        job.model, job.trust_remote_code, dtype=torch.float32, device=job.device
    )
    result = sft_train(model, tokenizer, rows, job.sft)
    out = save_model_atomic(model, tokenizer, Path(job.output_dir))
    write_provenance(out, job.model)
    summary = {
        "output_dir": str(out),
        "model": job.model,
        "rows": len(rows),
        "steps": job.sft.max_steps,
        "final_loss": result.final_loss,
        "seconds": round(result.seconds, 2),
        "data_sha256": data_sha256,
    }
    record = {**summary, "job": job.model_dump(mode="json"), "history": result.history}
    (out / "sft_run.json").write_text(json.dumps(record, indent=1))
    return summary
