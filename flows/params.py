"""Parameters of the `simpo-retrain` flow: one pydantic model, grouped as in the design.

`load_params(config_file, overrides)` merges a YAML file and `--set key=value` overrides
(dotted paths, YAML-typed values) and validates the result; an unknown key or a bad value
fails at once with the dotted path of the field and what to fix. Reading, overriding and
the messages are the library's own (`simpo_core.settings`), as for a training job file.
"""

from pathlib import Path
from typing import Any

from pydantic import Field, model_validator

from simpo_core.audit.settings import AuditSettings
from simpo_core.data.mix import SourceSpec, check_unique_names
from simpo_core.data.settings import SplitSettings, ValidateSettings
from simpo_core.errors import ConfigError
from simpo_core.eval.settings import EvalOptions
from simpo_core.gate.promotion import GateSettings
from simpo_core.generate.settings import GenerateSettings
from simpo_core.models import DEVICE_PATTERN
from simpo_core.settings import StepSettings, apply_overrides, read_yaml_mapping
from simpo_core.train.config import LoraSettings, SimPOConfig
from simpo_core.train.presets import with_model_preset
from simpo_core.train.quantized import Quantization


class StrictModel(StepSettings):
    """A parameter group: unknown keys fail at once, values are checked on assignment."""


class DataSource(StepSettings):
    source: str = Field("synthetic", description="file, folder, hub id, or 'synthetic' (generated demo data)")
    sources: list[SourceSpec] | None = Field(
        None,
        min_length=1,
        description="several sources mixed by prompt hash instead of `source`: a list of {source, name, weight "
        "or fraction} (docs/data.md, Several sources)",
    )
    replay: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="share of the champion's training sources (read from its MLflow run) mixed in again, "
        "when still readable; 0: none",
    )

    @model_validator(mode="after")
    def one_way_to_name_the_data(self) -> "DataSource":
        default = type(self).model_fields["source"].default
        if self.sources is not None and "source" in self.model_fields_set and self.source != default:
            raise ValueError(
                f"data.source ({self.source!r}) and data.sources are both set: drop data.source, or list it "
                "as one entry of data.sources"
            )
        if self.sources is not None:
            check_unique_names(self.sources)
        return self


class DataParams(ValidateSettings, SplitSettings, DataSource):
    """Where the pairs come from (listed first), which are held out and how they are validated."""


class ModelParams(StrictModel):
    source: str = Field(
        "tiny", description="starting model: 'tiny' (an SFT model), 'tiny-scratch', a local folder, or a hub id"
    )
    trust_remote_code: bool = Field(
        False, description="run code shipped with the model, in every step that loads it (off by default)"
    )
    device: str = Field(
        "auto",
        pattern=DEVICE_PATTERN,
        description="where every step runs the model (training, evaluation, judges, champion re-evaluation): "
        "auto (the GPU when there is one), cpu, cuda or cuda:N",
    )
    lora: LoraSettings | None = Field(None, description="train LoRA adapters instead of all weights")
    quantization: Quantization = Field(
        "none",
        description="load the starting model in 4bit (NF4) or 8bit to train model.lora on it (QLoRA, one process; "
        "pip install 'simpo-pipeline[quantization]'); the trained adapter keeps the unquantized model as its base",
    )


class RegistryLocation(StepSettings):
    tracking_uri: str | None = Field(
        None, description="MLflow tracking URI; MLFLOW_TRACKING_URI or sqlite under .simpo/ when unset"
    )
    experiment_name: str = Field("simpo-retrain", min_length=1, description="MLflow experiment")
    registered_model_name: str = Field("simpo-policy", min_length=1, description="MLflow registered model")


class RegistryParams(GateSettings, RegistryLocation):
    """Where runs and versions are recorded (listed first), and the champion gate."""


class AlertParams(StrictModel):
    """Where a failed or crashed run is announced (the summary artifact and MLflow tag are always written)."""

    block: str | None = Field(
        None,
        pattern=r"^[a-z0-9][a-z0-9-]*/[a-z0-9][a-z0-9-]*$",
        description="Prefect notification block as 'type-slug/name' (e.g. slack-webhook/simpo-alerts, "
        "custom-webhook/simpo-alerts), as `prefect block ls` lists it; none: no notification",
    )


class GenerateParams(GenerateSettings):
    """On-policy pairs (`simpo run --prompts`): the champion answers new prompts, a judge picks."""

    prompts: str | None = Field(
        None, description="prompt source; when set, generate-pairs makes the training pairs (the on-policy loop)"
    )
    generator: str | None = Field(
        None,
        description="the model that answers: a folder, hub id or 'tiny' (default: the champion, else model.source)",
    )


class RetrainParams(StrictModel):
    data: DataParams = Field(default_factory=DataParams)
    model: ModelParams = Field(default_factory=ModelParams)
    train: SimPOConfig = Field(default_factory=SimPOConfig.for_tiny, description="SimPO training configuration")
    audit: AuditSettings = Field(default_factory=AuditSettings)
    eval: EvalOptions = Field(default_factory=EvalOptions)
    registry: RegistryParams = Field(default_factory=RegistryParams)
    generate: GenerateParams = Field(default_factory=GenerateParams)
    alerts: AlertParams = Field(default_factory=AlertParams)
    output_dir: str = Field("simpo-runs", description="folder that receives one sub-folder per flow run")
    force: bool = Field(
        False, description="train and register even when this exact training (same data, settings, model) is registered"
    )

    @model_validator(mode="before")
    @classmethod
    def train_preset_follows_the_model(cls, values: Any) -> Any:
        """`train.preset: auto` (the default) becomes the starting model's own preset.

        The embedded models (`tiny`, SFT'd, and `tiny-scratch`) have presets of the same
        name: a tiny model wants a far larger learning rate than the 1e-6 that suits a 7B
        model; any other model gets `none`. The resolved name is what the run records, and
        user-given fields always win over the preset's.
        """
        if not isinstance(values, dict):
            return values
        default_source = ModelParams.model_fields["source"].default
        model = values.get("model") or {}
        source = model.get("source", default_source) if isinstance(model, dict) else model.source
        train = values.get("train")
        if train is not None and not isinstance(train, dict):
            return values
        return {**values, "train": with_model_preset(train or {}, source)}

    @model_validator(mode="after")
    def audit_counts_the_training_limits(self) -> "RetrainParams":
        """The audit counts the pairs the training limits cut: its unset limits are train's."""
        limits = {"max_length": self.train.max_length, "max_prompt_length": self.train.max_prompt_length}
        missing = {key: value for key, value in limits.items() if getattr(self.audit, key) is None}
        if missing:  # assigning re-runs this check, which then finds nothing missing
            self.audit = AuditSettings.model_validate({**self.audit.model_dump(), **missing})
        return self

    @model_validator(mode="after")
    def generation_fits_the_training_prompts(self) -> "RetrainParams":
        """Generated prompts are checked against the training's prompt limit unless one is given."""
        if "max_prompt_length" not in self.generate.model_fields_set:
            values = {**self.generate.model_dump(exclude_unset=True), "max_prompt_length": self.train.max_prompt_length}
            self.generate = GenerateParams.model_validate(values)
        return self


def load_params(config_file: Path | None = None, overrides: list[str] | None = None) -> RetrainParams:
    """Build flow parameters from an optional YAML file and `key=value` overrides.

    Raises:
        ConfigError: unreadable file, unknown key or invalid value (names the dotted path).
    """
    return validate_params(raw_params(config_file, overrides))


def raw_params(config_file: Path | None = None, overrides: list[str] | None = None) -> dict[str, Any]:
    """The parameter mapping of a YAML file with `key=value` overrides applied, not yet validated.

    Raises:
        ConfigError: unreadable file, a file that is not a mapping, or a malformed override.
    """
    raw = read_yaml_mapping(config_file) if config_file is not None else {}
    return apply_overrides(raw, overrides)


def validate_params(raw: dict[str, Any]) -> RetrainParams:
    """Validate a raw parameter dict: one line per bad key, with its dotted path (docs/config.md).

    Raises:
        ConfigError: an unknown key or a bad value.
    """
    return RetrainParams.from_dict(raw, source="parameters")


def check_sources(params: RetrainParams) -> None:
    """Refuse sources that cannot load before any work starts (and before MLflow logs).

    Raises:
        ConfigError: missing model folder, hub id not cached while offline, a missing
            reward-model folder, or a model.quantization that cannot run (no LoRA, several
            processes, bitsandbytes missing).
        DataError: a local data source that does not exist or has an unsupported type.
    """
    from simpo_core.data.loading import check_source, is_local_source
    from simpo_core.models import check_model_source
    from simpo_core.train.quantized import check_quantization

    check_model_source(params.model.source)
    lora = params.model.lora or params.train.lora  # as the training reads them
    check_quantization(params.model.quantization, params.train.model_copy(update={"lora": lora}))
    sources = [spec.source for spec in params.data.sources] if params.data.sources else [params.data.source]
    for source in sources:
        if is_local_source(source):  # a hub dataset is opened (and cached) by load-preferences
            check_source(source)
    generate = params.generate
    if generate.prompts is not None and generate.judge == "reward-model" and not generate.judge_model:
        raise ConfigError("generate.judge reward-model needs generate.judge_model (a local reward-model folder)")
    if generate.judge_model and not Path(generate.judge_model).expanduser().exists():
        raise ConfigError(f"generate.judge_model {generate.judge_model} does not exist; pass a local model folder")
    if params.eval.judge == "reward-model" and not Path(str(params.eval.reward_model_path)).exists():
        raise ConfigError(
            f"eval.reward_model_path {params.eval.reward_model_path} does not exist; pass a local model folder"
        )
