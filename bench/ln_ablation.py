"""Length-normalisation ablation: SimPO with and without LN, on length-biased and balanced data.

Usage: python bench/ln_ablation.py [--steps 300] [--train-pairs 2000] [--eval-pairs 400]
                                   [--generation-samples 16] [--threads 2] [--plot docs/ln_ablation.png]

The embedded `tiny` model (the same seeded initialisation each time) is trained with the
`tiny` preset (SFT weight 1) for `--steps` steps, once with `length_normalize: true` (SimPO)
and once with `false` (the paper's "w/o LN": reward β × summed log-prob), on two kinds of
synthetic data (`simpo_core.data.synthetic.generate_pairs`):

    biased:   length_bias 0.6, the chosen response is the longer one in 80% of pairs
    balanced: length_bias 0.0, chosen longer in 50%

Each model is scored on held-out pairs of its own kind (another seed) by
`simpo_core.eval.heldout.evaluate_model`, which always uses the *averaged* log-prob reward
(β × mean token log-prob), so both variants are compared on the same metric: reward
accuracy, length-controlled accuracy (mean of the accuracies on chosen-longer and
chosen-shorter pairs), the Spearman correlation of response length with reward, and the
mean length in tokens of greedy and sampled answers to `--generation-samples` prompts.
The untrained model is scored once per kind as a reference. A table is printed and a
figure written to `--plot`.
"""

import argparse
import tempfile
import time
from pathlib import Path

ROWS = (("biased", 0.6), ("balanced", 0.0))
VARIANTS = (("SimPO (LN)", True), ("w/o LN", False))
METRICS = (
    ("reward_accuracy", "accuracy"),
    ("length_controlled_accuracy", "length-controlled acc."),
    ("length_reward_correlation", "length-reward Spearman"),
    ("mean_generated_length", "mean generated tokens"),
)


def score(model, tokenizer, pairs, settings) -> dict[str, float]:
    """The four ablation numbers of one model on held-out `pairs`."""
    from simpo_core.eval.heldout import evaluate_model

    block = evaluate_model(model, tokenizer, pairs, settings)
    return {
        "reward_accuracy": block["reward_accuracy"],
        "length_controlled_accuracy": block["length_controlled_accuracy"],
        "length_reward_correlation": block["length_reward_correlation"],
        "mean_generated_length": block["generation"]["mean_length"],
    }


def train_variant(train_pairs, length_normalize: bool, steps: int, seed: int, output_dir: Path):
    """The tiny model trained with the tiny preset, with or without length normalisation."""
    from simpo_core import SimPOConfig, SimPOTrainer, load_model_and_tokenizer

    model, tokenizer = load_model_and_tokenizer("tiny")
    config = SimPOConfig.for_tiny(
        output_dir=output_dir,
        max_steps=steps,
        save_steps=0,
        eval_steps=0,
        seed=seed,
        length_normalize=length_normalize,
    )
    trainer = SimPOTrainer(model, config, tokenizer=tokenizer, train_dataset=train_pairs)
    trainer.train()
    return trainer.model, tokenizer


def run(args: argparse.Namespace) -> list[dict]:
    from simpo_core import load_model_and_tokenizer
    from simpo_core.data.synthetic import generate_pairs
    from simpo_core.eval.settings import EvalSettings

    settings = EvalSettings(
        generation_samples=args.generation_samples,
        max_new_tokens=args.max_new_tokens,
        max_length=256,  # the tiny preset's limits, β and γ
        max_prompt_length=128,
        beta=2.0,
        gamma=1.0,
        device="cpu",
    )
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        for data, bias in ROWS:
            heldout = generate_pairs(args.eval_pairs, length_bias=bias, seed=99)
            runs = [("untrained", None, 0)] + [
                (name, normalize, seed) for seed in range(args.seeds) for name, normalize in VARIANTS
            ]
            for name, normalize, seed in runs:
                start = time.perf_counter()
                if normalize is None:
                    model, tokenizer = load_model_and_tokenizer("tiny")
                else:
                    train = generate_pairs(args.train_pairs, length_bias=bias, seed=1 + seed)
                    model, tokenizer = train_variant(train, normalize, args.steps, 42 + seed, Path(scratch) / name)
                row = {"data": data, "variant": name, "seed": seed, **score(model, tokenizer, heldout, settings)}
                row["seconds"] = time.perf_counter() - start
                print(_format_row(row), flush=True)
                results.append(row)
    return results


def summarize(results: list[dict]) -> list[dict]:
    """Mean and (population) standard deviation over seeds of each (data, variant)."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in results:
        groups.setdefault((row["data"], row["variant"]), []).append(row)
    summary = []
    for (data, variant), rows in groups.items():
        entry = {"data": data, "variant": variant, "runs": len(rows)}
        for key, _ in METRICS:
            values = [row[key] for row in rows if row[key] is not None]
            mean = sum(values) / len(values) if values else None
            entry[key] = mean
            entry[f"{key}_std"] = (sum((v - mean) ** 2 for v in values) / len(values)) ** 0.5 if values else None
        summary.append(entry)
    return summary


def _format_row(row: dict) -> str:
    cells = [f"{row['data']:<9}", f"{row['variant']:<11}", f"{row['seed']}"]
    for key, _ in METRICS:
        value = row[key]
        cells.append(f"{value:>8.3f}" if value is not None else f"{'n/a':>8}")
    return " | ".join(cells) + f" | {row['seconds']:6.1f}s"


def markdown_table(summary: list[dict]) -> str:
    """Means ± standard deviations over seeds as a Markdown table (the one in docs/evaluation.md)."""
    header = "| data | model | runs | " + " | ".join(label for _, label in METRICS) + " |"
    lines = [header, "|---|---|---:|" + "---:|" * len(METRICS)]
    for row in summary:
        cells = []
        for key, _ in METRICS:
            value, spread = row[key], row[f"{key}_std"]
            digits = 1 if key == "mean_generated_length" else 3
            text = "n/a" if value is None else f"{value:.{digits}f}"
            cells.append(text + (f" ± {spread:.{digits}f}" if value is not None and row["runs"] > 1 else ""))
        lines.append(f"| {row['data']} | {row['variant']} | {row['runs']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(summary: list[dict], path: Path) -> None:
    """One bar panel per metric: LN vs w/o LN (and the untrained model), per kind of data; bars
    are means over seeds, whiskers one standard deviation."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    variants = list(dict.fromkeys(row["variant"] for row in summary))
    figure = Figure(figsize=(13, 3.4), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, len(METRICS))
    width = 0.8 / len(variants)
    for ax, (key, label) in zip(axes, METRICS):
        for index, variant in enumerate(variants):
            rows = [next(r for r in summary if r["data"] == data and r["variant"] == variant) for data, _ in ROWS]
            values = [row[key] or 0.0 for row in rows]
            spreads = [row[f"{key}_std"] or 0.0 for row in rows]
            positions = [x + index * width for x in range(len(ROWS))]
            ax.bar(positions, values, width, yerr=spreads, capsize=2, label=variant)
        ax.set_xticks([x + width * (len(variants) - 1) / 2 for x in range(len(ROWS))], [data for data, _ in ROWS])
        ax.set_title(label, fontsize=10)
        if key != "mean_generated_length":
            ax.axhline(0.5 if "accuracy" in key else 0.0, color="gray", linewidth=0.8, linestyle="--")
    axes[0].legend(fontsize=8)
    figure.suptitle("SimPO with and without length normalisation (tiny model, synthetic pairs)", fontsize=11)
    figure.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--seeds", type=int, default=3, help="training runs per variant (data order and pairs)")
    parser.add_argument("--train-pairs", type=int, default=2000)
    parser.add_argument("--eval-pairs", type=int, default=400)
    parser.add_argument("--generation-samples", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--plot", type=Path, default=Path(__file__).resolve().parent.parent / "docs/ln_ablation.png")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    print(f"{'data':<9} | {'model':<11} | s | " + " | ".join(f"{label[:8]:>8}" for _, label in METRICS) + " |  time")
    summary = summarize(run(args))
    print()
    print(markdown_table(summary))
    plot(summary, args.plot)
    print(f"\nfigure: {args.plot}; total {time.perf_counter() - start:.0f}s ({args.steps} steps per model)")


if __name__ == "__main__":
    main()
