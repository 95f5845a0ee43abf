"""The data steps of a training, one straight line for one source or many.

A single source is a mix of one: every source is checked, validated (streamed) and audited
on its own, the mix step joins them (the only source of a run passes through it as it is) and
the split cuts the held-out pairs.
"""

from pathlib import Path

from flows.params import RetrainParams
from simpo_core.audit.balance import AuditResult
from simpo_core.data.mix import SourceSpec, check_unique_names
from simpo_core.data.settings import SplitSettings, ValidateSettings
from simpo_core.data.split import SplitResult
from simpo_core.data.validation import ValidationResult
from simpo_core.errors import ConfigError
from tasks.data import (
    audit_length_balance_task,
    audit_mix_task,
    load_preferences_task,
    mix_sources_task,
    split_holdout_task,
    validate_preferences_task,
)
from tasks.helpers.tracking import Tracking
from tasks.replay import replay_sources_task

GENERATED_SOURCE = "generated"  # the name of the generated pairs in a mix of sources


def data_steps(
    params: RetrainParams, run_dir: Path, tracking: Tracking, generated: str | None = None
) -> tuple[ValidationResult, AuditResult, SplitResult]:
    """Check, validate and audit every source, mix them, split the held-out pairs.

    One source validates into `data/` and audits into `audit/`; each source of a mix (named
    sources, replayed records, generated pairs beside named sources) into
    `data/sources/NAME` and `audit/sources/NAME`, and the mixed rows into `data/` and `audit/`.
    """
    data, model = params.data, params.model
    sources = training_sources(params, tracking, generated)
    mixed = len(sources) > 1 or data.sources is not None
    settings = ValidateSettings.fields_of(data)
    parts: list[tuple[SourceSpec, ValidationResult]] = []
    audits: dict[str, AuditResult] = {}
    for spec in sources:
        folder = Path("sources", spec.name) if mixed else Path()
        load_preferences_task(spec.source)
        validated = validate_preferences_task(
            spec, settings, model.source, run_dir / "data" / folder, tracking, model.trust_remote_code, mixed
        )
        audits[spec.name] = audit_length_balance_task(
            validated,
            model.source,
            params.audit,
            run_dir / "audit" / folder,
            tracking,
            model.trust_remote_code,
            spec.name if mixed else "",
        )
        parts.append((spec, validated))
    if mixed:
        validated = mix_sources_task(parts, run_dir / "data", tracking)
        audited = audit_mix_task(
            validated, audits, model.source, params.audit, run_dir / "audit", tracking, model.trust_remote_code
        )
    else:
        (_, validated), audited = parts[0], audits[parts[0][0].name]
    split = split_holdout_task(validated.valid_path, SplitSettings.fields_of(data), run_dir / "data", tracking)
    return validated, audited, split


def training_sources(params: RetrainParams, tracking: Tracking, generated: str | None = None) -> list[SourceSpec]:
    """The sources a training reads: `data.sources` or `data.source` (a mix of one), the
    generated pairs (which replace `data.source`), and the replayed records of earlier versions."""
    data = params.data
    sources = data.sources or [SourceSpec(source=data.source, fraction=1.0)]
    if generated is not None:  # the generated pairs are the data, mixed with data.sources when given
        mine = SourceSpec(source=generated, name=GENERATED_SOURCE, fraction=1.0)
        sources = [*data.sources, mine] if data.sources else [mine]
    if data.replay > 0:
        replayed = replay_sources_task(
            params.registry.registered_model_name, tracking.uri, data.replay, params.output_dir
        )
        sources = [*sources, *replayed]
    try:
        check_unique_names(sources)
    except ValueError as error:
        raise ConfigError(f"data.sources: {error}") from None
    return sources
