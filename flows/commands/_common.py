"""Helpers shared by the command modules."""

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from simpo_core.errors import SimpoError

# CLI flag -> dotted flow parameter it sets (`simpo run`, `simpo sweep`)
FLAG_TO_PARAM = {
    "data": "data.source",
    "model": "model.source",
    "output_dir": "output_dir",
    "tracking_uri": "registry.tracking_uri",
    "prompts": "generate.prompts",
    # the options `simpo validate` and `simpo audit` take, which the data steps' messages name
    "format": "data.format",
    "max_invalid_fraction": "data.max_invalid_fraction",
    "policy": "audit.policy",
    "threshold": "audit.threshold",
}


def add_set_flag(parser: argparse.ArgumentParser, example: str = "train.max_steps=50") -> None:
    """`--set KEY=VALUE` (repeatable): one flow parameter by dotted path."""
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"override one parameter by dotted path, e.g. {example} (repeatable)",
    )


def add_flow_arguments(parser: argparse.ArgumentParser, config_help: str, set_example: str) -> None:
    """The options of a command that runs a flow: the config file, the source shortcuts, --set, --force."""
    parser.add_argument("--config", type=Path, help=config_help)
    parser.add_argument("--data", help="data source: file, folder, hub id or 'synthetic' (default)")
    parser.add_argument(
        "--model",
        help="starting model: folder, hub id, 'tiny' (the default, an SFT model) or 'tiny-scratch'; "
        "the training preset follows it (train.preset=auto; --set train.preset=NAME or none to choose)",
    )
    parser.add_argument(
        "--prompts",
        help="the on-policy loop: prompts the champion answers and a judge scores; the pairs are the data "
        "(prompt file, preference file, dataset id or 'synthetic'; generate.* with --set)",
    )
    parser.add_argument("--output-dir", help="where run outputs go (default simpo-runs/)")
    parser.add_argument("--tracking-uri", help="MLflow tracking URI (default: sqlite under .simpo/)")
    add_set_flag(parser, set_example)
    parser.add_argument(
        "--force", action="store_true", help="retrain even when this exact training is already registered"
    )
    add_data_step_arguments(parser)


def add_data_step_arguments(parser: argparse.ArgumentParser) -> None:
    """`--format`, `--max-invalid-fraction`, `--policy` and `--threshold`, as `simpo validate` and
    `simpo audit` take them: the validation and audit messages name them, whichever command ran."""
    from simpo_core.audit.settings import AuditSettings
    from simpo_core.data.settings import ValidateSettings

    data = parser.add_argument_group("data validation and length-balance audit (data.* and audit.* with --set)")
    add_settings_arguments(data, ValidateSettings, ["format", "max_invalid_fraction"])
    add_settings_arguments(data, AuditSettings, ["policy", "threshold"])


def flow_overrides(args: argparse.Namespace, flags: dict[str, str] = FLAG_TO_PARAM) -> list[str]:
    """`key=value` overrides from the shortcut flags the user gave, then --force, then --set."""
    overrides = [f"{param}={getattr(args, flag)}" for flag, param in flags.items() if getattr(args, flag) is not None]
    return overrides + (["force=true"] if args.force else []) + args.overrides


def add_json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON summary as the last line of stdout")


def emit_summary(summary: dict[str, Any], as_json: bool) -> None:
    """Print the summary: one JSON line on stdout (with `"ok": true`; a failure prints `"ok":
    false`, see `_failure`), or `key: value` lines on stderr."""
    if as_json:
        print(json.dumps({"ok": True, **summary}, default=str), flush=True)
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
    from tasks.helpers.tracking import get_client, resolve_tracking_uri

    name = args.name or RegistryLocation().registered_model_name
    return get_client(resolve_tracking_uri(args.tracking_uri)), name
