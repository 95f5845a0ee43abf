"""The base of every step's settings model, and the one way settings are read and checked.

Each pipeline step takes one settings model (`ValidateSettings`, `AuditSettings`,
`EvalSettings`, `SimPOConfig`, ...), and its defaults live there only: the CLI builds it from
the flags a user gave, the flow's parameters compose it, and neither restates a default.

Every reader of settings goes through the same three parts, so a typo or a bad value reads
the same wherever it was made (a flow's parameters, a training job file, a preset, a flag):
`read_yaml_mapping` reads a file, `set_dotted`/`parse_override` apply `--set key=value`, and
`describe_validation_error` names every bad key and what is wrong with it.
"""

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from simpo_core.errors import ConfigError


class StepSettings(BaseModel):
    """A typo fails at once (`extra="forbid"`); every field has a constraint and a description."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    @classmethod
    def fields_of(cls, group: BaseModel) -> Any:
        """This model's fields taken from `group`, a parameter group that composes several
        settings models (a plain `model_validate` would hand back `group` itself)."""
        return cls.model_validate(group.model_dump(include=set(cls.model_fields)))

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str | None = None) -> Any:
        """Validate `values` as given (a None is a value: `max_grad_norm: null` turns clipping off).

        Args:
            values: field name -> value; nested groups as mappings.
            source: what the values came from, for the message (a file, "options", a preset);
                the model's name when not given.

        Raises:
            ConfigError: one line per bad key, naming it and what is wrong (`describe_validation_error`).
        """
        try:
            return cls.model_validate(values)
        except ValidationError as error:
            raise ConfigError(describe_validation_error(error, source or cls.__name__)) from None

    @classmethod
    def from_values(cls, values: dict[str, Any], source: str | None = None) -> Any:
        """Validate `values`, leaving out the ones that are None (their default applies): the
        flags of a command, where None means "not given".

        Raises:
            ConfigError: one line per bad key, naming it and what is wrong.
        """
        return cls.from_dict({key: value for key, value in values.items() if value is not None}, source)


def describe_validation_error(error: ValidationError, source: str) -> str:
    """`invalid <source>:` then one line per problem, `key: what is wrong (got value)`;
    an unknown key is named as such, with its dotted path."""
    return f"invalid {source}:\n  " + "\n  ".join(_describe_problem(item) for item in error.errors())


def _describe_problem(item: Any) -> str:
    key = ".".join(str(part) for part in item["loc"])
    if item["type"] == "extra_forbidden":
        return f"unknown key {key!r}: check its spelling against the documented fields"
    message = item["msg"].removeprefix("Value error, ")  # pydantic's prefix on a validator's own message
    given = item.get("input")
    # A whole mapping (a check across fields, a missing key) would only repeat what the user wrote.
    shown = "" if isinstance(given, dict) else f" (got {given!r:.60})"
    return f"{key}: {message}{shown}" if key else f"{message}{shown}"


def read_yaml_mapping(path: str | Path) -> dict[str, Any]:
    """Load a YAML file that must hold a mapping at the top level (an empty file is `{}`).

    Raises:
        ConfigError: the file is missing, is not valid YAML, or holds something else than a mapping.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist; pass the path of a YAML file")
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"config file {path} is not valid YAML: {error}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"config file {path} must hold a mapping of keys to values, got {type(values).__name__}")
    return values


def set_dotted(target: dict[str, Any], dotted_key: str, value: Any) -> None:
    """Set `target["a"]["b"] = value` for `dotted_key` "a.b", creating inner dicts.

    Raises:
        ConfigError: a part of the path already holds a value, not a group.
    """
    *parents, leaf = dotted_key.split(".")
    node = target
    for part in parents:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"--set {dotted_key}: {part!r} is a value, not a group")
        node = child
    node[leaf] = value


def parse_override(text: str) -> tuple[str, Any]:
    """Split `key=value`; the value is read as YAML (`0`, `true`, `null`, `[a, b]`).

    Raises:
        ConfigError: no `=`, or nothing before it.
    """
    key, separator, raw = text.partition("=")
    if not separator or not key.strip():
        raise ConfigError(f"--set expects KEY=VALUE with a dotted key, e.g. train.max_steps=50; got {text!r}")
    return key.strip(), yaml.safe_load(raw) if raw.strip() else None


def apply_overrides(values: dict[str, Any], overrides: list[str] | None) -> dict[str, Any]:
    """`values` (changed in place and returned) with each `key=value` of `overrides` set, in order."""
    for text in overrides or []:
        set_dotted(values, *parse_override(text))
    return values
