"""`simpo rollback`: move `champion` back to an earlier version, recorded with who and why."""

import argparse
import sys

from flows.commands._common import add_json_flag, add_registry_arguments, emit_summary, registry_client

HELP = "move the champion alias back (to the version it replaced, or --to VERSION); recorded"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--to", dest="to_version", default=None, help="version to make champion again")
    parser.add_argument("--reason", required=True, help="why (recorded on the version and in the history)")
    add_registry_arguments(parser)
    add_json_flag(parser)


def main(args: argparse.Namespace) -> int:
    from tasks.helpers.champion import rollback

    client, name = registry_client(args)
    event = rollback(client, name, args.reason, args.to_version)
    print(f"champion of {name} is now v{event['version']} (was v{event['previous']}): {args.reason}", file=sys.stderr)
    emit_summary({"registered_model_name": name, **event}, args.json)
    return 0
