"""Helpers shared by the command modules."""

import argparse
import json
import sys
from typing import Any

from simpo_core.errors import SimpoError


def add_json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON summary as the last line of stdout")


def emit_summary(summary: dict[str, Any], as_json: bool) -> None:
    """Print the summary: one JSON line on stdout, or `key: value` lines on stderr."""
    if as_json:
        print(json.dumps(summary, default=str), flush=True)
        return
    for key, value in summary.items():
        print(f"{key}: {value}", file=sys.stderr)


def not_available(command: str, feature: str) -> int:
    """Refuse a command whose feature is not built yet, clearly and with a non-zero exit."""
    raise SimpoError(f"`simpo {command}` is not available in this version: {feature} is not built yet")


def add_settings_arguments(parser: argparse.ArgumentParser, model: Any, names: list[str] | None = None) -> None:
    """One `--flag` per field of a settings model (`max_invalid_fraction` -> `--max-invalid-fraction`).

    The help text and the default shown are the field's own: defaults live in the model,
    so an option the user leaves out stays None and the model's default applies.
    """
    import types
    from typing import Literal, Union, get_args, get_origin

    for name in names or list(model.model_fields):
        field = model.model_fields[name]
        kind = field.annotation
        if get_origin(kind) in (Union, types.UnionType):  # `X | None`: the flag takes an X
            kind = next(arg for arg in get_args(kind) if arg is not type(None))
        choices = get_args(kind) if get_origin(kind) is Literal else None
        shown = "unset" if field.default is None else field.default
        parser.add_argument(
            "--" + name.replace("_", "-"),
            type=None if choices else kind,
            choices=choices,
            default=None,
            help=f"{field.description} (default {shown})",
        )


def settings_from_args(model: Any, args: argparse.Namespace, names: list[str] | None = None) -> Any:
    """The settings model from the flags the user gave; the rest keep the model's defaults."""
    names = names or list(model.model_fields)
    return model.from_values({name: getattr(args, name) for name in names}, source="options")


def add_registry_arguments(parser: argparse.ArgumentParser) -> None:
    """`--tracking-uri` and `--name`: which registry and which registered model."""
    parser.add_argument(
        "--tracking-uri", default=None, help="MLflow tracking URI (default: MLFLOW_TRACKING_URI or .simpo/)"
    )
    parser.add_argument("--name", default=None, help="registered model (default: the flow's, simpo-policy)")


def registry_client(args: argparse.Namespace) -> tuple[Any, str]:
    """The MLflow client and registered model name the registry commands work on."""
    from flows.params import RegistryLocation
    from tasks.tracking import get_client, resolve_tracking_uri

    name = args.name or RegistryLocation().registered_model_name
    return get_client(resolve_tracking_uri(args.tracking_uri)), name
