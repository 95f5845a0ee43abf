"""One CLI vocabulary: an option a step's message names is taken by every command that runs the step."""

import ast
import re
from pathlib import Path

import pytest

from flows.cli import build_parser

ROOT = Path(__file__).parents[2]
OPTION = re.compile(r"(?<![\w-])--[a-z][a-z-]*[a-z]")
# the package whose messages a user can see -> the commands that run its steps
REACH = {
    "simpo_core/data": ["validate", "audit", "run", "sweep"],
    "simpo_core/audit": ["audit", "run", "sweep"],
}


def message_options(folder: str) -> dict[str, str]:
    """Options named in the string literals of a package (docstrings left out) -> where first."""
    found: dict[str, str] = {}
    for path in sorted((ROOT / folder).glob("*.py")):
        tree = ast.parse(path.read_text())
        documented = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
        docstrings = {
            id(node.body[0].value)
            for node in ast.walk(tree)
            if isinstance(node, documented) and node.body and isinstance(node.body[0], ast.Expr)
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
                for option in OPTION.findall(node.value):
                    found.setdefault(option, f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


def accepted_options(command: str) -> set[str]:
    parser = build_parser()
    subcommands = next(action for action in parser._actions if action.dest == "command").choices
    return {option for action in subcommands[command]._actions for option in action.option_strings}


def test_the_scan_finds_the_options_data_messages_name():
    assert "--max-invalid-fraction" in message_options("simpo_core/data")


@pytest.mark.parametrize("folder, command", [(folder, command) for folder, cmds in REACH.items() for command in cmds])
def test_every_option_a_message_names_is_taken_by_the_command(folder, command):
    missing = {
        option: where for option, where in message_options(folder).items() if option not in accepted_options(command)
    }
    assert not missing, f"`simpo {command}` can show messages naming options it does not take: {missing}"
