"""Render the flow's parameter reference (docs/config.md) from the pydantic models.

`python -m flows.config_reference > docs/config.md`; a test keeps the file current.
"""

from typing import Any

from pydantic import BaseModel

from flows.params import RetrainParams

HEADER = """# `simpo run` parameters

Generated from `flows/params.py` and `simpo_core/train/config.py` by
`python -m flows.config_reference > docs/config.md`. Set any field in a YAML file
(`simpo run --config FILE`, groups as below) or with `--set group.field=value`.
Unset `train` fields take the values of `train.preset`: `auto` (the default) is the starting
model's own preset (`tiny` and `tiny-scratch` have one, any other model starts from the
library defaults, `none`), and the run records the preset it resolved. The same `train` group
is the `train:` of a `simpo train` job file (docs/training.md).
"""


def render_reference() -> str:
    lines = [HEADER]
    for group, field in RetrainParams.model_fields.items():
        annotation = field.annotation
        model = _model_class(annotation)
        if model is None:
            lines += [f"## `{group}`", "", f"{field.description or ''} Default: `{field.default!r}`.", ""]
            continue
        lines += [f"## `{group}`", "", "| field | default | description |", "| --- | --- | --- |"]
        for name, sub in model.model_fields.items():
            default = sub.default_factory.__name__ + "()" if sub.default_factory else repr(sub.default)
            lines.append(f"| `{group}.{name}` | `{default}` | {(sub.description or '').replace('|', '/')} |")
        lines.append("")
    return "\n".join(lines)


def _model_class(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


if __name__ == "__main__":
    print(render_reference(), end="")
