"""The `evaluate-holdout` task: starting model vs trained model on the held-out pairs."""

from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from simpo_core.eval.settings import EvalSettings
from tasks.helpers.retry import COMPUTE_TASK
from tasks.helpers.tracking import Tracking, log_metrics, numeric_metrics


@task(name="evaluate-holdout", timeout_seconds=3 * 3600, **COMPUTE_TASK)
def evaluate_holdout_task(
    base_source: str,
    trained_dir: str,
    heldout_path: Path,
    settings: EvalSettings,
    out_dir: Path,
    tracking: Tracking,
) -> dict[str, Any]:
    """Evaluate both models on identical pairs (on `settings.device`); log metrics, report and plots."""
    import pandas as pd

    from simpo_core.eval.saved import evaluate_saved

    pairs = pd.read_parquet(heldout_path)
    result = evaluate_saved(trained_dir, pairs, settings, base_source=base_source, out_dir=out_dir)
    client = tracking.client()
    for block in ("base", "trained", "delta", "judge"):
        log_metrics(client, tracking.run_id, numeric_metrics(result.heldout.get(block) or {}, f"eval/{block}"))
    for path in result.paths.values():
        client.log_artifact(tracking.run_id, str(path), "evaluation")
    create_markdown_artifact(result.markdown, key="heldout-evaluation", description="held-out evaluation")
    trained, base = result.heldout["trained"], result.heldout["base"]
    get_run_logger().info(
        "held-out reward accuracy %s -> %s, length-controlled %s -> %s",
        *(
            _fmt(block.get(key))
            for key in ("reward_accuracy", "length_controlled_accuracy")
            for block in (base, trained)
        ),
    )
    return result.heldout


def _fmt(value: Any) -> str:
    return "n/a" if value is None else f"{value:.3f}"
