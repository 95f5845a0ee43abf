"""The `generate-pairs` task: on-policy pairs from the champion's answers, scored by the judge."""

from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from simpo_core.generate.pairs import GenerationResult
from simpo_core.generate.settings import GenerateSettings
from tasks.retry import COMPUTE_TASK, tracking_errors
from tasks.tracking import get_client

CHAMPION_URI = "models:/{name}@champion"


def resolve_generator(generator: str | None, fallback: str, name: str, tracking_uri: str) -> tuple[str, str]:
    """`(model source, label)` of the model that answers: `generator` when given, else the
    champion of `name` (downloaded from the registry), else `fallback` (the starting model)."""
    if generator:
        return generator, generator
    from tasks.champion import current_champion
    from tasks.promotion import download_version_model

    with tracking_errors(tracking_uri, "finding the champion to generate with"):
        champion = current_champion(get_client(tracking_uri), name)
        if champion is None:
            return fallback, fallback
        model_dir, _ = download_version_model(champion, tracking_uri)  # an adapter names its base
    return str(model_dir), f"{CHAMPION_URI.format(name=name)} (v{champion.version})"


@task(name="generate-pairs", timeout_seconds=6 * 3600, **COMPUTE_TASK)
def generate_pairs_task(
    prompts: str,
    generator: str | None,
    starting_model: str,
    settings: GenerateSettings,
    out_dir: Path,
    name: str,
    tracking_uri: str,
    run_id: str,
    device: str = "auto",
    trust_remote_code: bool = False,
) -> dict[str, Any]:
    """Sample `settings.samples` answers per prompt from the generator (the champion by default),
    judge them, write the pairs; log them to MLflow as a dataset input, summarise in an artifact."""
    from simpo_core.generate.step import generate_step

    logger = get_run_logger()
    source, label = resolve_generator(generator, starting_model, name, tracking_uri)
    logger.info("generating %d answers per prompt of %s with %s", settings.samples, prompts, label)

    def progress(done: int, total: int) -> None:
        logger.info("answers sampled: round %d of %d", done, total)

    result = generate_step(
        prompts,
        source,
        settings,
        out_dir,
        device=device,
        trust_remote_code=trust_remote_code,
        generator_label=label,
        progress=progress,
    )
    publish_generation(result, tracking_uri, run_id)
    return result.summary()


def publish_generation(result: GenerationResult, tracking_uri: str, run_id: str) -> None:
    """The pairs file as an artifact and dataset input of the run, its counts as metrics."""
    from tasks.tracking import log_metrics

    client = get_client(tracking_uri)
    summary = result.summary()
    counts = {"generation/prompts": summary["prompts"], "generation/pairs": summary["pairs"]}
    counts.update({f"generation/dropped_{reason}": count for reason, count in summary["dropped"].items()})
    counts["generation/score_gap_mean"] = summary["score_gaps"]["mean"]
    log_metrics(client, run_id, counts)
    client.log_artifact(run_id, str(result.pairs_path), "generation")
    client.set_tag(run_id, "generation.generator", summary["generator"]["source"][:500])
    client.set_tag(run_id, "generation.judge", summary["judge"]["name"])
    _log_pairs_dataset(result, tracking_uri, run_id)
    dropped = "".join(f"| {reason} | {count} |\n" for reason, count in summary["dropped"].items()) or "| none | 0 |\n"
    create_markdown_artifact(
        f"# On-policy pairs\n\nGenerator `{summary['generator']['source']}`, judge `{summary['judge']['name']}`, "
        f"{summary['sampling']['samples']} answers per prompt.\n\n"
        f"- prompts in: **{summary['prompts']}**\n- pairs out: **{summary['pairs']}**\n"
        f"- score gap (chosen - rejected): mean {summary['score_gaps']['mean']:.3f}, "
        f"min {summary['score_gaps']['min']:.3f}, max {summary['score_gaps']['max']:.3f}\n\n"
        f"| dropped because | prompts |\n|---|---|\n{dropped}",
        key="generated-pairs",
        description="prompts in, pairs out, drops by reason",
    )


def _log_pairs_dataset(result: GenerationResult, tracking_uri: str, run_id: str) -> None:
    import mlflow
    import pandas as pd
    from mlflow.data.code_dataset_source import CodeDatasetSource

    from simpo_core.identity import file_sha256

    preview = pd.read_json(result.pairs_path, lines=True).head(1000)[["chosen", "rejected"]]
    source = CodeDatasetSource(tags={"generator": result.generator["source"], "judge": result.judge["name"]})
    digest = file_sha256(Path(result.pairs_path))[:36]
    dataset = mlflow.data.from_pandas(preview, source=source, name="generated-pairs", digest=digest)
    mlflow.set_tracking_uri(tracking_uri)
    with mlflow.start_run(run_id=run_id):
        mlflow.log_input(dataset, context="generation")
