"""`simpo train`: SimPO training only, from a YAML job (see `simpo_core.train.worker`).

The job's `train:` group holds SimPOConfig fields, as the flow's `train` group does, and
`--set key=value` overrides any key of the job by dotted path (`--set train.beta=3`,
`--set model=/path`), as `simpo run --set` does for the flow's parameters.

The same step runs as `python -m simpo_core.train.worker`, which is what every process
runs under torchrun; with `num_processes` or `nnodes` above 1 it starts torchrun itself.
The final model goes to `<output_dir>/final`.
"""

import argparse

from flows.commands._common import add_set_flag

HELP = "train with SimPO from a YAML job file (what the train-simpo task runs)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from simpo_core.train.worker import add_arguments as add_worker_arguments

    add_worker_arguments(parser)
    add_set_flag(parser, "train.beta=3 or model=PATH")


def main(args: argparse.Namespace) -> int:
    from simpo_core.train.worker import read_job, train_job

    train_job(read_job(args.config, args.overrides), resume=args.resume)
    return 0
