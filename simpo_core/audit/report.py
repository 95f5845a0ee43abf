"""Write the length audit as JSON, Markdown and a PNG histogram (matplotlib, Agg backend)."""

import json
from pathlib import Path
from typing import Any

import numpy as np

JSON_FILE = "length_audit.json"
MARKDOWN_FILE = "length_audit.md"
PNG_FILE = "length_audit.png"


def write_audit_reports(
    report: dict[str, Any], chosen: np.ndarray, rejected: np.ndarray, out_dir: Path
) -> dict[str, Path]:
    """Write the three report files into `out_dir` (created); returns their paths by kind."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / JSON_FILE, "markdown": out_dir / MARKDOWN_FILE, "png": out_dir / PNG_FILE}
    paths["json"].write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    paths["markdown"].write_text(audit_markdown(report), encoding="utf-8")
    plot_length_histogram(chosen, rejected, paths["png"], report.get("bias_direction", "none"))
    return paths


def audit_markdown(report: dict[str, Any]) -> str:
    """The report as a Markdown page: headline figures, then the per-bucket table."""
    direction = report.get("bias_direction", "none")
    verdict = f"**flagged**: length predicts the preference ({direction} wins)" if report["flagged"] else "not flagged"
    lines = [
        "# Length-balance audit",
        "",
        f"{report['pairs']} pairs, policy `{report['policy']}`, threshold {report['threshold']}: {verdict}.",
        "",
        "| figure | value |",
        "| --- | --- |",
        f"| chosen mean / median tokens | {report['chosen_mean_tokens']:.1f} / {report['chosen_median_tokens']:.1f} |",
        f"| rejected mean / median tokens | {report['rejected_mean_tokens']:.1f} / {report['rejected_median_tokens']:.1f} |",
        f"| chosen longer fraction | {report['chosen_longer_fraction']:.3f} |",
        f"| tie fraction | {report['tie_fraction']:.3f} |",
        f"| length-only accuracy (ties excluded) | {report['length_only_accuracy']:.3f} |",
        f"| length-bias strength, either direction | {report['length_bias_strength']:.3f} ({direction} wins) |",
        f"| point-biserial correlation | {report['point_biserial']:.3f} |",
        f"| rows removed by rebalancing | {report['removed']} |",
    ]
    if "after" in report:
        after = report["after"]
        lines.append(
            f"| after rebalancing | {after['pairs']} pairs, chosen longer {after['chosen_longer_fraction']:.3f}, "
            f"length-only accuracy {after['length_only_accuracy']:.3f} |"
        )
    lines += truncation_lines(report.get("truncated"))
    lines += [
        "",
        "## By pair length (mean of chosen and rejected tokens)",
        "",
        "| tokens | pairs | chosen mean | rejected mean | chosen longer | length-only accuracy |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for bucket in report["buckets"]:
        lines.append(
            f"| {bucket['min_tokens']:.0f}–{bucket['max_tokens']:.0f} | {bucket['pairs']} | "
            f"{bucket['chosen_mean_tokens']:.1f} | {bucket['rejected_mean_tokens']:.1f} | "
            f"{bucket['chosen_longer_fraction']:.3f} | {bucket['length_only_accuracy']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def truncation_lines(truncated: dict[str, Any] | None) -> list[str]:
    """Table rows and a verdict on the pairs the training limits cut (none without the block)."""
    if not truncated:
        return []
    limits = f"max_length {truncated['max_length']}, max_prompt_length {truncated['max_prompt_length']}"
    lines = [
        f"| pairs training cuts ({limits}) | {truncated['pairs']} ({truncated['fraction']:.1%}; "
        f"allowed {truncated['max_truncated_fraction']:.1%}) |",
        f"| of which prompt / chosen / rejected cut | {truncated['prompt']} / {truncated['chosen']} / "
        f"{truncated['rejected']} |",
    ]
    if truncated["flagged"]:
        lines += [
            "",
            f"**Truncation**: training would cut {truncated['fraction']:.1%} of the pairs. Raise train.max_length / "
            "train.max_prompt_length, or quarantine long rows with data.max_prompt_tokens / data.max_response_tokens.",
        ]
    return lines


def plot_length_histogram(chosen: np.ndarray, rejected: np.ndarray, path: Path, direction: str = "none") -> Path:
    """Overlaid histograms of chosen and rejected token lengths."""
    from matplotlib.figure import Figure  # no pyplot: no global backend state, works headless

    figure = Figure(figsize=(7, 4))
    axes = figure.subplots()
    values = np.concatenate([chosen, rejected]) if len(chosen) else np.array([0.0])
    bins = np.histogram_bin_edges(values, bins=min(50, max(1, len(np.unique(values)))))
    axes.hist(chosen, bins=bins, alpha=0.55, label=f"chosen (mean {np.mean(chosen) if len(chosen) else 0:.0f})")
    axes.hist(rejected, bins=bins, alpha=0.55, label=f"rejected (mean {np.mean(rejected) if len(rejected) else 0:.0f})")
    axes.set_xlabel("response tokens")
    axes.set_ylabel("pairs")
    bias = "no length bias" if direction == "none" else f"{direction} wins more often"
    axes.set_title(f"Chosen vs rejected response length ({bias})")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    return path
