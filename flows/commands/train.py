"""`simpo train`: SimPO training only, from a YAML job (see `simpo_core.train.worker`).

The same step runs as `python -m simpo_core.train.worker`, which is what every process
runs under torchrun; with `num_processes` or `nnodes` above 1 it starts torchrun itself.
The final model goes to `<output_dir>/final`.
"""

import argparse

HELP = "train with SimPO from a YAML config (what the train-simpo task runs)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from simpo_core.train.worker import add_arguments as add_worker_arguments

    add_worker_arguments(parser)


def main(args: argparse.Namespace) -> int:
    from simpo_core.train.worker import read_job, train_job

    train_job(read_job(args.config), resume=args.resume)
    return 0
