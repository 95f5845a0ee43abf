"""The `promote-model` task: move `champion` only to a challenger that beats it."""

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from simpo_core.eval.settings import EvalSettings
from simpo_core.gate.model_card import render_model_card
from simpo_core.gate.promotion import GateSettings, PromotionDecision, decide_promotion
from simpo_core.gate.rerun import gate_identity
from tasks.helpers.champion import current_champion, move_champion
from tasks.helpers.retry import IO_TASK, tracking_errors
from tasks.helpers.tracking import Tracking, process_mlflow_uri
from tasks.identity import DECISION_TAG, GATE_TAG

LOCK_WAIT_SECONDS = 2 * 3600  # under the task's 3 h timeout


@dataclass(frozen=True)
class GateVerdict:
    """What the gate decided for a version, and the champion after the decision."""

    promoted: bool
    reason: str
    champion_version: str | None
    judge_vs_champion: dict[str, Any] | None = None  # the judged head-to-head, when a judge ran


@task(name="promote-model", timeout_seconds=3 * 3600, **IO_TASK)
def promote_model_task(
    name: str,
    version: str,
    heldout: dict[str, Any],
    heldout_path: Path,
    eval_settings: EvalSettings,
    gate: GateSettings,
    tracking: Tracking,
    lineage: dict[str, Any],
    challenger_dir: str | None = None,
) -> GateVerdict:
    """Compare with the champion on this run's held-out pairs; move the alias if the gate says so.

    With a judge (`eval_settings.judge`) and the challenger's model folder (`challenger_dir`),
    both models also answer held-out prompts and the judge scores them (the judged
    head-to-head, returned as `judge_vs_champion` and logged as `judge_vs_champion.json`).

    Runs under a Prefect concurrency slot per registered model, so two flow runs that
    finish together compare and move the alias one after the other. Idempotent: a retry
    after the alias moved finds the decision recorded on the version. A decision recorded
    under other evaluation or gate settings (`gate_identity`) is taken again.
    """
    current_gate = gate_identity(eval_settings, gate)
    with tracking_errors(tracking.uri, "promoting the model"), promotion_lock(name):
        client = tracking.client()
        recorded = finish_recorded_decision(client, name, version, current_gate)
        if recorded is not None:
            return recorded
        fingerprint = (lineage.get("data") or {}).get("fingerprint")  # of the data this version trained on
        inputs = (client, name, heldout, heldout_path, eval_settings, gate, tracking.uri, fingerprint)
        base_model = lineage.get("base_model")
        decision, champion_block, answers = decide(*inputs, challenger_dir=challenger_dir, base_model=base_model)
        card = render_model_card(name, version, lineage, heldout, decision, champion_block, answers)
        if answers is not None:
            client.log_dict(tracking.run_id, answers, "judge_vs_champion.json")
        verdict = apply_decision(client, name, version, decision, card, tracking.run_id, current_gate)
        return replace(verdict, judge_vs_champion=answers)


def decide(
    client: Any,
    name: str,
    heldout: dict[str, Any],
    heldout_path: Path,
    eval_settings: EvalSettings,
    gate: GateSettings,
    tracking_uri: str,
    challenger_fingerprint: str | None = None,
    *,
    challenger_dir: str | None = None,
    base_model: str | None = None,
) -> tuple[PromotionDecision, dict[str, Any] | None, dict[str, Any] | None]:
    """The gate's decision against the champion (re-evaluated on these pairs) or the starting
    model (`base_model`), the champion's block, and the judged head-to-head of the two models'
    answers (None without a judge or without `challenger_dir`).

    A champion trained on other data than the challenger (`challenger_fingerprint`) is still
    compared on these held-out pairs; the reason says so (`other_data_note`). Judging the
    champion's answers needs only its registered model, not its training data.
    """
    champion = current_champion(client, name)
    judging = challenger_dir is not None and eval_settings.judge != "none"
    if champion is None:  # the evaluation's judge compared the challenger with the starting model: it applies
        reference_name, judge = "the starting model (no champion yet)", heldout.get("judge")
        loaded = _load(base_model, eval_settings) if judging and base_model else None
        reference = heldout["base"]
    else:
        reference_name, judge = f"champion v{champion.version}", None
        loaded = load_version(champion, eval_settings, tracking_uri) if judging else None
        reference = evaluate_champion(champion, heldout_path, eval_settings, tracking_uri, loaded)
    answers = judge_answers(challenger_dir, loaded, reference_name, heldout_path, eval_settings)
    decision = decide_promotion(heldout["trained"], reference, reference_name, gate, judge, answers)
    if champion is None:
        return decision, None, answers
    return with_data_note(decision, client, champion, challenger_fingerprint), reference, answers


def judge_answers(
    challenger_dir: str | None, reference: Any, reference_name: str, heldout_path: Path, eval_settings: EvalSettings
) -> dict[str, Any] | None:
    """The judged head-to-head of the challenger (loaded from `challenger_dir`) against the
    loaded `reference` on the held-out prompts; None when either is missing."""
    import pandas as pd

    from simpo_core.eval.head_to_head import judge_head_to_head

    if challenger_dir is None or reference is None:
        return None
    challenger = _load(challenger_dir, eval_settings)
    pairs = pd.read_parquet(heldout_path)
    return judge_head_to_head(challenger, reference, pairs, eval_settings, reference_name=reference_name)


def _load(source: str, eval_settings: EvalSettings, base: Path | None = None) -> tuple[Any, Any]:
    from simpo_core.models import load_model_and_tokenizer

    options = {"trust_remote_code": eval_settings.trust_remote_code, "device": eval_settings.device}
    return load_model_and_tokenizer(str(source), base=str(base) if base else None, **options)


def with_data_note(
    decision: PromotionDecision, client: Any, champion: Any, challenger_fingerprint: str | None
) -> PromotionDecision:
    """`decision` with the note, when the champion's training data differs from the challenger's,
    appended to its reason and both fingerprints in its evidence."""
    champion_fingerprint = run_data_fingerprint(client, champion.run_id)
    if not (challenger_fingerprint and champion_fingerprint) or champion_fingerprint == challenger_fingerprint:
        return decision
    note = (
        f"champion v{champion.version} was trained on other data (fingerprint {champion_fingerprint[:12]}…); "
        "both compared on this run's held-out pairs"
    )
    evidence = {
        **decision.evidence,
        "champion_data_fingerprint": champion_fingerprint,
        "challenger_data_fingerprint": challenger_fingerprint,
    }
    return replace(decision, reason=f"{decision.reason}; {note}", evidence=evidence)


def run_data_fingerprint(client: Any, run_id: str | None) -> str | None:
    """The `data.fingerprint` tag of the run a version was logged from, or of its parent run
    (a sweep's trial runs sit under the run that validated the data); None when unrecorded."""
    from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

    for _ in range(2):  # the run, then its parent
        if not run_id:
            return None
        try:
            tags = client.get_run(run_id).data.tags
        except Exception as error:  # a deleted run: the note is left out, the decision stands
            get_run_logger().warning("data fingerprint of run %s not readable: %s", run_id, error)
            return None
        if tags.get("data.fingerprint"):
            return tags["data.fingerprint"]
        run_id = tags.get(MLFLOW_PARENT_RUN_ID)
    return None


def finish_recorded_decision(client: Any, name: str, version: str, current_gate: str) -> GateVerdict | None:
    """What an earlier try decided for this version under the same gate (finishing a promotion
    it recorded but did not get to apply), or None when none did.

    The champion stays the champion: a decision taken under other settings is not taken
    again for it (the gate would compare it with itself), and a version whose alias was
    moved by hand is recorded as promoted.
    """
    tags = client.get_model_version(name, version).tags
    champion = current_champion(client, name)
    is_champion = champion is not None and str(champion.version) == str(version)
    decided_here = DECISION_TAG in tags and tags.get(GATE_TAG) == current_gate
    if not decided_here:
        if not is_champion:
            return None
        if DECISION_TAG not in tags:
            client.set_model_version_tag(name, version, DECISION_TAG, "promoted")  # alias moved by hand
            tags = {**tags, DECISION_TAG: "promoted"}
    promoted = tags[DECISION_TAG] == "promoted" or is_champion
    reason = tags.get("promotion.reason") if decided_here else None
    reason = reason or f"version {version} already is the champion"
    if promoted and not is_champion:
        move_champion(client, name, version, action="promoted", reason=reason)
    get_run_logger().info("version %s: decision already recorded by an earlier try (%s)", version, reason)
    return GateVerdict(promoted, reason, str(version) if promoted else _version_of(champion))


def _version_of(champion: Any) -> str | None:
    return str(champion.version) if champion else None


def apply_decision(
    client: Any, name: str, version: str, decision: PromotionDecision, card: str, run_id: str, current_gate: str
) -> GateVerdict:
    """Record the decision and the model card on the version, then move the alias if promoted.

    The decision tags come first: a retry after a crash finds the decision recorded and only
    finishes what is left (see `finish_recorded_decision`).
    """
    verdict = "promoted" if decision.promoted else "rejected"
    client.update_model_version(name, version, description=card)
    client.log_text(run_id, card, "model_card.md")
    client.set_model_version_tag(name, version, "promotion.reason", decision.reason[:5000])
    client.set_model_version_tag(name, version, "promotion.evidence", json.dumps(decision.evidence)[:5000])
    client.set_model_version_tag(name, version, GATE_TAG, current_gate)
    client.set_model_version_tag(name, version, DECISION_TAG, verdict)  # last: the decision is complete
    if decision.promoted:
        move_champion(client, name, version, action="promoted", reason=decision.reason)
    get_run_logger().info("version %s %s: %s", version, verdict, decision.reason)
    create_markdown_artifact(card, key="promotion-decision", description="champion gate and model card")
    return GateVerdict(decision.promoted, decision.reason, _version_of(current_champion(client, name)))


def evaluate_champion(
    champion, heldout_path: Path, eval_settings: EvalSettings, tracking_uri: str, loaded: Any = None
) -> dict[str, Any]:
    """Re-evaluate the champion's weights on this run's held-out pairs, on `eval_settings.device`
    with its `trust_remote_code`; an adapter-only champion loads the base model logged beside it.
    `loaded`: the champion's `(model, tokenizer)` when `load_version` loaded them already."""
    import pandas as pd

    from simpo_core.eval.heldout import evaluate_model

    model, tokenizer = loaded or load_version(champion, eval_settings, tracking_uri)
    return evaluate_model(model, tokenizer, pd.read_parquet(heldout_path), eval_settings)


def load_version(version: Any, eval_settings: EvalSettings, tracking_uri: str) -> tuple[Any, Any]:
    """A registered version's `(model, tokenizer)`, downloaded from the registry and loaded on
    `eval_settings.device` (an adapter-only version with the base model logged beside it)."""
    model_dir, base = download_version_model(version, tracking_uri)
    return _load(model_dir, eval_settings, base)


def download_version_model(version: Any, tracking_uri: str) -> tuple[Path, Path | None]:
    """Download a registered version's model: (the policy folder, the base model logged beside
    an adapter-only policy or None)."""
    import mlflow

    from tasks.registry import BASE_MODEL_ARTIFACT

    # A `models:/` source resolves through the process-wide registry URI, not `tracking_uri`.
    with process_mlflow_uri(tracking_uri):
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=version.source, tracking_uri=tracking_uri))
    base = local / "artifacts" / BASE_MODEL_ARTIFACT
    return model_dir_inside(local), base if base.is_dir() else None


def model_dir_inside(downloaded: Path) -> Path:
    """The saved policy folder inside a downloaded pyfunc model: a full model (config.json +
    safetensors) or an adapter alone (adapter_config.json + safetensors), the base model
    logged beside an adapter excluded."""
    import yaml

    from tasks.registry import BASE_MODEL_ARTIFACT

    mlmodel = downloaded / "MLmodel"
    if mlmodel.is_file():  # the artifact the pyfunc loads is named in its MLmodel
        artifacts = yaml.safe_load(mlmodel.read_text())["flavors"]["python_function"].get("artifacts") or {}
        if "model_dir" in artifacts:
            return downloaded / artifacts["model_dir"]["path"]
    for config in sorted(downloaded.rglob("*config.json"), key=lambda path: len(path.parts)):
        if config.name in ("config.json", "adapter_config.json") and BASE_MODEL_ARTIFACT not in config.parts:
            if any(config.parent.glob("*.safetensors")):
                return config.parent
    raise FileNotFoundError(
        f"no saved model folder (config.json or adapter_config.json + safetensors) inside {downloaded}"
    )


@contextmanager
def promotion_lock(name: str) -> Iterator[None]:
    """One promotion at a time per registered model, across flow runs on the same Prefect API."""
    from prefect.client.orchestration import get_client as prefect_client
    from prefect.concurrency.sync import concurrency

    limit = f"simpo-promote-{name}"
    with prefect_client(sync_client=True) as client:
        client.upsert_global_concurrency_limit_by_name(limit, 1)
    # Wait for the slot less long than the task may run (its timeout_seconds), so a stuck
    # holder surfaces as this wait's clear error, not as the task's timeout.
    with concurrency(limit, occupy=1, timeout_seconds=LOCK_WAIT_SECONDS, strict=True):
        yield
