"""The evaluation step on saved models: load them, evaluate on held-out pairs, report.

`simpo evaluate` and the flow's `evaluate-holdout` task both call `evaluate_saved`; the
library functions it composes (`evaluate_heldout`, `evaluate_model`) take models in memory.
"""

import logging
from pathlib import Path
from typing import Any

from simpo_core.errors import ConfigError, DataError
from simpo_core.eval.heldout import EvaluationResult, evaluate_heldout, evaluate_model
from simpo_core.eval.settings import EvalSettings

logger = logging.getLogger(__name__)


def evaluate_saved(
    model_source: str,
    pairs: Any,
    settings: EvalSettings | None = None,
    *,
    base_source: str | None = None,
    out_dir: Path | None = None,
) -> EvaluationResult:
    """Evaluate a saved model on held-out pairs, against its starting model when one is given.

    Args:
        model_source: the trained model (folder, hub id or 'tiny').
        pairs: DataFrame or list of canonical/flat rows.
        settings: `EvalSettings`; both models load on `settings.device`, with
            `settings.trust_remote_code`. Adapter-only folders load their base plus the adapter.
        base_source: the starting model; it must share the trained model's tokenizer. None
            evaluates the model alone: `heldout` then has `base`, `delta` and `judge` None.
        out_dir: where the JSON, Markdown and PNG report go (nothing written if None).

    Raises:
        ConfigError: a model that cannot load, or two different tokenizers.
    """
    from simpo_core.models import load_model_and_tokenizer

    settings = settings or EvalSettings()
    loading = {"trust_remote_code": settings.trust_remote_code, "device": settings.device}
    trained, tokenizer = load_model_and_tokenizer(model_source, **loading)
    if base_source is None:
        return _evaluate_alone(trained, tokenizer, pairs, settings, out_dir)
    base, base_tokenizer = load_model_and_tokenizer(base_source, **loading)
    if len(tokenizer) != len(base_tokenizer) or tokenizer.chat_template != base_tokenizer.chat_template:
        raise ConfigError(
            f"the model {model_source} and its base {base_source} use different tokenizers or chat templates; "
            "held-out log-probs are only comparable under one tokenizer: pass the model training started from"
        )
    return evaluate_heldout(base, trained, tokenizer, pairs, settings, out_dir=out_dir)


def _evaluate_alone(
    model: Any, tokenizer: Any, pairs: Any, settings: EvalSettings, out_dir: Path | None
) -> EvaluationResult:
    from simpo_core.eval.report import render_model_markdown, write_model_report

    block = evaluate_model(model, tokenizer, pairs, settings)
    markdown = render_model_markdown(block)
    heldout = {
        "pairs": block["pairs"],
        "pairs_sha256": block["pairs_sha256"],
        "beta": settings.beta,
        "gamma": settings.gamma,
        "base": None,
        "trained": block,
        "delta": None,
        "judge": None,
    }
    paths = write_model_report(heldout, markdown, Path(out_dir)) if out_dir else {}
    return EvaluationResult(heldout=heldout, markdown=markdown, paths=paths)


def load_eval_pairs(source: str) -> Any:
    """The loadable rows of `source` (prompt, chosen, rejected); unreadable records are reported.

    Raises:
        DataError: the source holds no usable pair.
    """
    from simpo_core.data.loading import load_preferences

    frame = load_preferences(source).rows
    bad = frame["load_reasons"].map(len) > 0
    if bad.any():
        logger.warning(
            "left out %d of %d records of %s that are not preference pairs (run `simpo validate` for details)",
            int(bad.sum()),
            len(frame),
            source,
        )
    frame = frame.loc[~bad, ["prompt", "chosen", "rejected"]]
    if frame.empty:
        raise DataError(f"{source} holds no usable preference pair; check it with `simpo validate {source}`")
    logger.info("evaluating on %d pairs from %s", len(frame), source)
    return frame
