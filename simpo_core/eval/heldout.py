"""Held-out evaluation: starting model vs trained model on the same preference pairs.

    pairs ──► log-probs (the training code's `compute_pair_logps`) ──► preference metrics
          └─► sample of prompts ──► greedy + sampled answers ──► generation check, judge

`evaluate_heldout` returns the `heldout` block of the evaluate/run JSON summary: one block
per model (`base`, `trained`; see `eval_metrics.preference_metrics` and
`eval_generation.generation_block`), their `delta` with a paired bootstrap interval on the
accuracy gain, and the judge's verdict. `evaluate_model` evaluates one model the same way,
so the promotion gate can re-evaluate a champion on the very same pairs (`pairs_sha256`
tells whether two blocks saw the same pairs).
"""

import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from simpo_core.data.schema import CanonicalPair, to_canonical
from simpo_core.errors import DataError
from simpo_core.eval.generation import Generation, generate_responses, generation_block, sample_prompts
from simpo_core.eval.metrics import delta_metrics
from simpo_core.eval.scoring import PairScorer, default_scorer, score_model
from simpo_core.eval.settings import EvalSettings

logger = logging.getLogger(__name__)

EXAMPLES = 3  # generated answers quoted in each generation block, for a human to read


@dataclass
class EvaluationResult:
    """What `evaluate_heldout` returns.

    Attributes:
        heldout: `{"pairs", "pairs_sha256", "beta", "gamma", "base", "trained", "delta", "judge"}`;
            the judge block holds each model's mean score (`mean_score_base`,
            `mean_score_trained`), each model block its `greedy_repetition_rate`.
        markdown: a Markdown report of the same numbers.
        paths: written files by kind (`json`, `markdown`, `margin_histogram`,
            `accuracy_by_length`); empty when no `out_dir` was given.
    """

    heldout: dict[str, Any]
    markdown: str
    paths: dict[str, Path] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """The JSON-ready summary `{"heldout": ...}` (paths as strings)."""
        return {"heldout": self.heldout, "report_paths": {kind: str(path) for kind, path in self.paths.items()}}


@dataclass
class _ModelRun:
    """One model's block plus the per-pair arrays the delta and the plots need."""

    block: dict[str, Any]
    correct: np.ndarray  # (N,) bool
    margins: np.ndarray  # (N,) β·(chosen − rejected)
    greedy: list[Generation]
    sampled: list[Generation]


def normalize_pairs(pairs: Any) -> list[CanonicalPair]:
    """Canonical pairs from a DataFrame or a list of canonical or flat rows.

    Raises:
        DataError: no pairs, or a row without `prompt`, `chosen` and `rejected`.
    """
    records = pairs.to_dict("records") if hasattr(pairs, "to_dict") else list(pairs)
    if not records:
        raise DataError("no held-out pairs to evaluate; check the split or the --data file")
    rows = []
    for index, record in enumerate(records):
        try:
            rows.append(to_canonical(record))
        except (KeyError, TypeError) as error:
            raise DataError(
                f"held-out row {index} is not a preference pair ({error}); each row needs "
                "'prompt', 'chosen' and 'rejected' (flat or canonical layout)"
            ) from error
    return rows


def pairs_fingerprint(rows: Sequence[CanonicalPair]) -> str:
    """SHA-256 of the canonical pairs, in order: equal fingerprints mean identical pairs."""
    digest = hashlib.sha256()
    for row in rows:
        digest.update(json.dumps(row, sort_keys=True, ensure_ascii=False).encode("utf-8") + b"\n")
    return digest.hexdigest()


def _generate(
    model: Any, tokenizer: Any, prompts: list, settings: EvalSettings, generator: Callable
) -> tuple[list, list]:
    if not prompts:
        return [], []
    options = dict(
        max_new_tokens=settings.max_new_tokens,
        batch_size=settings.batch_size,
        max_prompt_length=settings.max_prompt_length,
        seed=settings.seed,
    )
    greedy = generator(model, tokenizer, prompts, do_sample=False, **options)
    sampled = generator(model, tokenizer, prompts, do_sample=True, **options)
    return greedy, sampled


def _run_model(
    name: str,
    model: Any,
    tokenizer: Any,
    rows: list[CanonicalPair],
    prompts: list,
    settings: EvalSettings,
    scorer: PairScorer,
    generator: Callable,
) -> _ModelRun:
    logger.info("evaluating %s on %d held-out pairs", name, len(rows))
    block, correct, margins = score_model(model, tokenizer, rows, settings, scorer)
    greedy, sampled = _generate(model, tokenizer, prompts, settings, generator)
    block["generation"] = generation_block(greedy, sampled) if prompts else None
    # Quoted at the top of the block for the run summary: do the greedy answers loop?
    block["greedy_repetition_rate"] = block["generation"]["greedy"]["repetition_rate"] if prompts else None
    if prompts:
        block["generation"]["examples"] = [
            {"prompt": prompt[-1]["content"], "greedy": g.text, "sampled": s.text}
            for prompt, g, s in list(zip(prompts, greedy, sampled))[:EXAMPLES]
        ]
    block["pairs_sha256"] = pairs_fingerprint(rows)
    logger.info(
        "%s: reward accuracy %.3f, length-controlled %s, margin %+.3f",
        name,
        block["reward_accuracy"],
        block["length_controlled_accuracy"],
        block["reward_margin"],
    )
    return _ModelRun(block, correct, margins, greedy, sampled)


def evaluate_model(
    model: Any,
    tokenizer: Any,
    pairs: Any,
    settings: EvalSettings | None = None,
    *,
    scorer: PairScorer | None = None,
    generator: Callable[..., list[Generation]] | None = None,
) -> dict[str, Any]:
    """One model's block on held-out pairs (the shape of `heldout["base"]`).

    Args:
        pairs: DataFrame or list of canonical/flat rows (N pairs).
        settings: β, γ, token limits, batch size, generation check and seed (`EvalSettings`;
            the judge is not used: a judge compares two models). `generation_samples` 0
            skips the generation check and `generation` is None.
        scorer, generator: replace the training log-prob code or `generate_responses`
            (tests use fakes).

    Returns:
        The preference metrics of `simpo_core.eval.metrics.preference_metrics`, plus
        `generation` and `pairs_sha256`.
    """
    settings = settings or EvalSettings()
    rows = normalize_pairs(pairs)
    prompts = sample_prompts([row["prompt"] for row in rows], settings.generation_samples, settings.seed)
    return _run_model(
        "model", model, tokenizer, rows, prompts, settings, scorer or default_scorer, generator or generate_responses
    ).block


def evaluate_heldout(
    base_model: Any,
    trained_model: Any,
    tokenizer: Any,
    pairs: Any,
    settings: EvalSettings | None = None,
    *,
    out_dir: Path | None = None,
    scorer: PairScorer | None = None,
    generator: Callable[..., list[Generation]] | None = None,
) -> EvaluationResult:
    """Evaluate the starting and the trained model on the same held-out pairs.

    Args:
        base_model, trained_model: causal LMs sharing `tokenizer`.
        pairs: DataFrame or list of canonical/flat rows (N pairs).
        settings: β and γ (rewards are β·avg log-prob; the loss uses both), token limits,
            the generation check (prompts answered per model, greedy and sampled, and the
            answer length bound), the judge and the seed of the prompt sample, sampling and
            bootstrap (`EvalSettings`).
        out_dir: where to write the JSON, Markdown and PNG report (nothing written if None).
        scorer, generator: replace the training log-prob code or `generate_responses`.

    Returns:
        `EvaluationResult` with `heldout`, `markdown` and `paths`.

    Raises:
        DataError: no pairs, or rows that are not preference pairs.
        ConfigError: unknown judge, or a reward model that cannot be loaded.
    """
    from simpo_core.eval.judges import judge_for

    settings = settings or EvalSettings()
    score_fn = judge_for(settings)
    rows = normalize_pairs(pairs)
    prompts = sample_prompts([row["prompt"] for row in rows], settings.generation_samples, settings.seed)
    scorer, generator = scorer or default_scorer, generator or generate_responses
    base = _run_model("base", base_model, tokenizer, rows, prompts, settings, scorer, generator)
    trained = _run_model("trained", trained_model, tokenizer, rows, prompts, settings, scorer, generator)
    heldout = {
        "pairs": len(rows),
        "pairs_sha256": base.block["pairs_sha256"],
        "beta": settings.beta,
        "gamma": settings.gamma,
        "base": base.block,
        "trained": trained.block,
        "delta": delta_metrics(base.block, trained.block, base.correct, trained.correct, seed=settings.seed),
        "judge": _judge_block(settings.judge, score_fn, prompts, base, trained, settings.seed),
    }
    return _finish(heldout, out_dir, base.margins, trained.margins)


def _judge_block(
    name: str, score_fn: Callable | None, prompts: list, base: _ModelRun, trained: _ModelRun, seed: int
) -> dict[str, Any] | None:
    """Judge greedy and sampled answers of both models, prompt by prompt."""
    from simpo_core.eval.judges import compare_answers

    if score_fn is None:
        return None
    if not prompts:
        return {"name": name, "win_rate": None, "judged": 0, "note": "no answers generated (generation_samples = 0)"}
    result = compare_answers(score_fn, prompts + prompts, _answers(base), _answers(trained), seed=seed)
    logger.info("judge %s: win rate %s over %d answers", name, result["win_rate"], result["judged"])
    return {"name": name, "answers": "greedy and sampled", **result}


def _answers(run: _ModelRun) -> list[str]:
    return [g.text for g in run.greedy] + [g.text for g in run.sampled]


def _finish(
    heldout: dict[str, Any], out_dir: Path | None, base_margins: np.ndarray, trained_margins: np.ndarray
) -> EvaluationResult:
    from simpo_core.eval.report import render_markdown, write_report

    markdown = render_markdown(heldout)
    paths = write_report(heldout, markdown, Path(out_dir), base_margins, trained_margins) if out_dir else {}
    return EvaluationResult(heldout=heldout, markdown=markdown, paths=paths)
