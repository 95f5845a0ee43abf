"""`simpo registry`: the champion's history and every version's gate decision."""

import argparse
import sys

from flows.commands._common import add_json_flag, add_registry_arguments, emit_summary, registry_client

HELP = "show the champion history and each registered version's promotion decision"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_registry_arguments(parser)
    add_json_flag(parser)


def main(args: argparse.Namespace) -> int:
    from tasks.helpers.champion import current_champion, read_history

    client, name = registry_client(args)
    champion = current_champion(client, name)
    versions = sorted(client.search_model_versions(f"name = '{name}'"), key=lambda v: int(v.version))
    rows = [
        {
            "version": str(v.version),
            "decision": v.tags.get("promotion.decision", "none"),
            "reason": v.tags.get("promotion.reason", ""),
            "run_id": v.run_id,
        }
        for v in versions
    ]
    history = read_history(client, name)
    print(f"{name}: champion v{champion.version if champion else '-'}", file=sys.stderr)
    for event in history:
        print(
            f"  {event['at']}  v{event['version']:<4} {event['action']:<9} by {event['by']}: {event['reason'][:90]}",
            file=sys.stderr,
        )
    for row in rows:
        print(f"  v{row['version']:<4} {row['decision']:<9} {row['reason'][:100]}", file=sys.stderr)
    summary = {"registered_model_name": name, "champion_version": str(champion.version) if champion else None}
    emit_summary({**summary, "history": history, "versions": rows}, args.json)
    return 0
