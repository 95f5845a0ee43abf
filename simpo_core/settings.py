"""The base of every step's settings model: strict, validated on assignment.

Each pipeline step takes one settings model (`ValidateSettings`, `AuditSettings`,
`EvalSettings`, ...), and its defaults live there only: the CLI builds it from the flags a
user gave, the flow's parameters compose it, and neither restates a default.
"""

from typing import Any

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
    def from_values(cls, values: dict[str, Any], source: str = "settings") -> Any:
        """Validate `values`, leaving out the ones that are None (their default applies).

        Raises:
            ConfigError: one line per bad field, naming it and what to fix.
        """
        try:
            return cls.model_validate({key: value for key, value in values.items() if value is not None})
        except ValidationError as error:
            problems = "; ".join(
                f"{'.'.join(str(part) for part in item['loc']) or '(top level)'}: {item['msg']}"
                for item in error.errors()
            )
            raise ConfigError(f"invalid {source}: {problems}") from None
