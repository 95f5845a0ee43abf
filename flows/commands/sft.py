"""`simpo sft`: supervised fine-tuning, the stage a model goes through before SimPO.

Reads prompt/response rows (or preference pairs, whose chosen answers are the targets),
fine-tunes the starting model on them and saves it (safetensors, with its provenance), so
that `simpo run --set model.source=FOLDER` trains it with SimPO. A YAML `--config` holds
the job (`data`, `output_dir`, `model`, `device`, `sft: {lr, max_steps, ...}`); flags
override it. The step is `simpo_core.train.sft.run_sft_job`.
"""

import argparse
import logging
import sys
from pathlib import Path

from flows.commands._common import add_json_flag, emit_summary

HELP = "supervised fine-tuning on prompt/response or preference rows: the SFT stage SimPO starts from"
logger = logging.getLogger(__name__)

# Job fields that have a flag of their own (the SFT settings get one flag each, `--lr`, ...).
JOB_FLAGS = ("data", "output_dir", "model", "device")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from flows.commands._common import add_settings_arguments
    from simpo_core.train.sft_settings import SFTSettings

    parser.add_argument("--config", type=Path, help="YAML job: data, output_dir, model, device, sft: {settings}")
    parser.add_argument("--data", help="JSONL/JSON/Parquet/CSV of prompt/response rows or of preference pairs")
    parser.add_argument("--out", dest="output_dir", help="folder for the SFT'd model")
    parser.add_argument("--model", help="starting model: 'tiny-scratch' (default), a folder or a hub id")
    parser.add_argument("--device", help="auto (default), cpu, cuda or cuda:N")
    parser.add_argument(
        "--trust-remote-code", action="store_true", default=None, help="run code shipped with the model"
    )
    add_settings_arguments(parser, SFTSettings)
    add_json_flag(parser)


def main(args: argparse.Namespace) -> int:
    from simpo_core.train.sft import run_sft_job
    from simpo_core.train.sft_settings import SFTJob, SFTSettings

    job = SFTJob.from_values(_job_values(args, list(SFTSettings.model_fields)), source="simpo sft job")
    logger.info("SFT of %s on %s -> %s (%d steps)", job.model, job.data, job.output_dir, job.sft.max_steps)
    summary = run_sft_job(job)
    print(
        f"\nsft       {summary['rows']} rows, {summary['steps']} steps in {summary['seconds']:.1f} s, "
        f"final loss {summary['final_loss']:.4f}\nsaved     {summary['output_dir']} "
        f"(train it with SimPO: simpo run --set model.source={summary['output_dir']})",
        file=sys.stderr,
    )
    if args.json:
        emit_summary(summary, True)
    return 0


def _job_values(args: argparse.Namespace, setting_names: list[str]) -> dict:
    """The YAML job, with the flags the user gave laid over it."""
    from simpo_core.errors import ConfigError
    from simpo_core.settings import read_yaml_mapping

    values = read_yaml_mapping(args.config) if args.config else {}
    settings = values.get("sft") or {}
    if not isinstance(settings, dict):
        raise ConfigError(f"{args.config}: 'sft' must be a mapping of SFT settings (lr, max_steps, ...)")
    flags = {name: getattr(args, name) for name in JOB_FLAGS if getattr(args, name) is not None}
    if args.trust_remote_code:
        flags["trust_remote_code"] = True
    overrides = {name: getattr(args, name) for name in setting_names if getattr(args, name) is not None}
    missing = [flag for flag, name in (("--data", "data"), ("--out", "output_dir")) if name not in {**values, **flags}]
    if missing:
        raise ConfigError(f"simpo sft needs {' and '.join(missing)} (or the same keys in --config)")
    return {**values, **flags, "sft": {**settings, **overrides}}
