"""The evaluation report: JSON (the `heldout` block), a Markdown table and two PNG plots.

Plots use matplotlib's object API (no pyplot, no global backend state), so they render
in worker processes and on machines without a display.
"""

import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

# (key in a model block, label, format)
TABLE_ROWS: tuple[tuple[str, str, str], ...] = (
    ("reward_accuracy", "reward accuracy (strict >)", "{:.3f}"),
    ("length_controlled_accuracy", "length-controlled accuracy", "{:.3f}"),
    ("accuracy_chosen_longer", "accuracy, chosen longer", "{:.3f}"),
    ("accuracy_chosen_shorter", "accuracy, chosen shorter", "{:.3f}"),
    ("reward_margin", "reward margin β·(chosen − rejected)", "{:+.3f}"),
    ("logps_chosen", "log-prob chosen (per token)", "{:.3f}"),
    ("logps_rejected", "log-prob rejected (per token)", "{:.3f}"),
    ("loss", "SimPO loss", "{:.4f}"),
    ("length_reward_correlation", "length–reward Spearman", "{:+.3f}"),
)
GENERATION_ROWS: tuple[tuple[str, str, str], ...] = (
    ("mean_length", "generated length (tokens)", "{:.1f}"),
    ("repetition_rate", "repetition rate", "{:.3f}"),
    ("empty_rate", "empty-answer rate", "{:.3f}"),
    ("collapsed", "collapsed", "{}"),
)


def _fmt(value: Any, pattern: str) -> str:
    if value is None or isinstance(value, float) and math.isnan(value):
        return "–"
    return pattern.format(value)


def _ci(block: dict[str, Any]) -> str:
    low, high = block.get("reward_accuracy_ci") or (None, None)
    return "–" if low is None else f"[{low:.3f}, {high:.3f}]"


def render_markdown(heldout: dict[str, Any]) -> str:
    """A Markdown summary of the `heldout` block: metrics table, generation, judge, verdict."""
    base, trained, delta = heldout["base"], heldout["trained"], heldout["delta"]
    lines = [
        f"## Held-out evaluation ({heldout['pairs']} pairs, β = {heldout['beta']}, γ = {heldout['gamma']})",
        "",
        "| metric | base | trained | Δ |",
        "| --- | ---: | ---: | ---: |",
    ]
    for key, label, pattern in TABLE_ROWS:
        lines.append(
            f"| {label} | {_fmt(base[key], pattern)} | {_fmt(trained[key], pattern)} | {_fmt(delta.get(key), '{:+.3f}')} |"
        )
    lines.append(f"| accuracy 95% CI | {_ci(base)} | {_ci(trained)} | {_ci(delta)} |")
    base_gen, trained_gen = base.get("generation"), trained.get("generation")
    if base_gen and trained_gen:
        for key, label, pattern in GENERATION_ROWS:
            change = "" if key == "collapsed" else _fmt(trained_gen[key] - base_gen[key], "{:+.3f}")
            lines.append(f"| {label} | {_fmt(base_gen[key], pattern)} | {_fmt(trained_gen[key], pattern)} | {change} |")
    lines += [*_length_lines(trained), "", _verdict(delta), *_judge_lines(heldout.get("judge")), *_warnings(trained)]
    return "\n".join(lines) + "\n"


def render_model_markdown(block: dict[str, Any]) -> str:
    """A Markdown summary of one model's block (evaluated without a starting model)."""
    lines = [f"## Held-out evaluation ({block['pairs']} pairs)", "", "| metric | model |", "| --- | ---: |"]
    lines += [f"| {label} | {_fmt(block[key], pattern)} |" for key, label, pattern in TABLE_ROWS]
    lines.append(f"| accuracy 95% CI | {_ci(block)} |")
    generation = block.get("generation")
    if generation:
        lines += [f"| {label} | {_fmt(generation[key], pattern)} |" for key, label, pattern in GENERATION_ROWS]
    return "\n".join([*lines, *_length_lines(block), *_warnings(block)]) + "\n"


def _length_lines(block: dict[str, Any]) -> list[str]:
    """How many pairs the length-controlled figures rest on, and on which token counts."""
    if "length_controlled_pairs" not in block:
        return []
    truncated = block.get("truncated_pairs")
    cut = "" if truncated is None else f"; {truncated} pairs had an answer cut to fit max_length when scored"
    return [
        "",
        f"Length-controlled figures rest on {block['length_controlled_pairs']} pairs "
        f"({block['pairs_chosen_longer']} chosen longer, {block['pairs_chosen_shorter']} chosen shorter; "
        f"{block['pairs_equal_length']} of equal length left out), lengths measured "
        f"{block.get('length_sides_measured', 'after truncation')}{cut}.",
    ]


def _verdict(delta: dict[str, Any]) -> str:
    low, high = delta["reward_accuracy_ci"]
    if delta["reward_accuracy_improved"]:
        return (
            f"Trained beats base: accuracy +{delta['reward_accuracy']:.3f} (paired 95% CI [{low:+.3f}, {high:+.3f}])."
        )
    return (
        f"No clear improvement: accuracy Δ {delta['reward_accuracy']:+.3f}, paired 95% CI "
        f"[{low:+.3f}, {high:+.3f}] includes 0 or lies below it."
    )


def _judge_lines(judge: dict[str, Any] | None) -> list[str]:
    if not judge:
        return []
    if judge.get("win_rate") is None:
        return ["", f"Judge `{judge['name']}`: skipped. {judge.get('note', '')}".rstrip()]
    low, high = judge["win_rate_ci"]
    controlled = _fmt(judge.get("length_controlled_win_rate"), "{:.3f}")
    return [
        "",
        f"Judge `{judge['name']}`: win rate of trained over base {judge['win_rate']:.3f} "
        f"(95% CI [{low:.3f}, {high:.3f}]; {judge['wins']} wins, {judge['ties']} ties, "
        f"{judge['losses']} losses); length-controlled {controlled} over "
        f"{judge['length_matched_pairs']} length-matched pairs. {judge.get('note', '')}".rstrip(),
    ]


def _warnings(trained: dict[str, Any]) -> list[str]:
    notes = []
    controlled, raw = trained.get("length_controlled_accuracy"), trained["reward_accuracy"]
    if controlled is not None and raw - controlled > 0.1:
        notes.append(
            f"Warning: raw accuracy {raw:.3f} is well above length-controlled {controlled:.3f}; "
            "part of the gain may come from preferring longer answers."
        )
    generation = trained.get("generation") or {}
    if generation.get("collapsed"):
        notes.append("Warning: the trained model's generations collapsed: " + "; ".join(generation["collapse_reasons"]))
    return ["", *notes] if notes else []


def plot_margin_histograms(base_margins: np.ndarray, trained_margins: np.ndarray, path: Path) -> Path:
    """Overlaid histograms of per-pair reward margins `(N,)` of both models; a line at 0."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.4, 4.0), layout="constrained")
    axes = figure.subplots()
    both = np.concatenate([base_margins, trained_margins])
    bins = np.linspace(both.min(), both.max(), 31) if np.ptp(both) > 0 else 10
    axes.hist(base_margins, bins=bins, alpha=0.55, label="base")
    axes.hist(trained_margins, bins=bins, alpha=0.55, label="trained")
    axes.axvline(0.0, color="black", linewidth=1)
    axes.set(xlabel="reward margin β·(avg log-prob chosen − rejected)", ylabel="pairs", title="Held-out reward margins")
    axes.legend()
    figure.savefig(path, dpi=110)
    return path


def plot_accuracy_by_length(series: dict[str, Sequence[dict[str, Any]]], path: Path) -> Path:
    """Grouped bars of accuracy per length-difference bucket, one bar per model.

    Args:
        series: model name -> its `accuracy_by_length_bucket` list (same buckets for all).

    A "longer wins" model shows as a staircase: 0 where the chosen answer is shorter, 1
    where it is longer.
    """
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7.2, 4.0), layout="constrained")
    axes = figure.subplots()
    first = next(iter(series.values()))
    positions = np.arange(len(first))
    width = 0.8 / len(series)
    for index, (name, buckets) in enumerate(series.items()):
        heights = [bucket["accuracy"] if bucket["accuracy"] is not None else 0.0 for bucket in buckets]
        axes.bar(positions + (index - (len(series) - 1) / 2) * width, heights, width=width, label=name)
    axes.set_xticks(positions, [f"{bucket['bucket']}\n(n={bucket['pairs']})" for bucket in first], fontsize=7)
    axes.axhline(0.5, color="gray", linestyle="--", linewidth=1)
    axes.set(ylim=(0, 1), ylabel="reward accuracy", title="Accuracy by length difference (chosen vs rejected)")
    axes.legend()
    figure.savefig(path, dpi=110)
    return path


def write_report(
    heldout: dict[str, Any],
    markdown: str,
    out_dir: Path,
    base_margins: np.ndarray,
    trained_margins: np.ndarray,
) -> dict[str, Path]:
    """Write `evaluation.json`, `evaluation.md`, `margins.png` and `accuracy_by_length.png`.

    Returns:
        Paths by kind: `json`, `markdown`, `margin_histogram`, `accuracy_by_length`.
    """
    paths = _write_text_files(heldout, markdown, Path(out_dir))
    paths["margin_histogram"] = plot_margin_histograms(base_margins, trained_margins, Path(out_dir) / "margins.png")
    series = {name: heldout[name]["accuracy_by_length_bucket"] for name in ("base", "trained")}
    paths["accuracy_by_length"] = plot_accuracy_by_length(series, Path(out_dir) / "accuracy_by_length.png")
    logger.info("wrote the evaluation report to %s", out_dir)
    return paths


def write_model_report(heldout: dict[str, Any], markdown: str, out_dir: Path) -> dict[str, Path]:
    """The report of one model evaluated alone (`heldout["base"]` is None): JSON, Markdown
    and the accuracy-by-length plot."""
    paths = _write_text_files(heldout, markdown, Path(out_dir))
    series = {"model": heldout["trained"]["accuracy_by_length_bucket"]}
    paths["accuracy_by_length"] = plot_accuracy_by_length(series, Path(out_dir) / "accuracy_by_length.png")
    logger.info("wrote the evaluation report to %s", out_dir)
    return paths


def _write_text_files(heldout: dict[str, Any], markdown: str, out_dir: Path) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "evaluation.json", "markdown": out_dir / "evaluation.md"}
    paths["json"].write_text(json.dumps({"heldout": heldout}, indent=2, default=_json_default) + "\n", encoding="utf-8")
    paths["markdown"].write_text(markdown, encoding="utf-8")
    return paths


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")
