import subprocess
import sys


def test_simpo_core_imports_neither_prefect_nor_mlflow():
    """The library must stay usable without the orchestration stack: load every module."""
    code = (
        "import importlib, pkgutil, sys, simpo_core\n"
        "for info in pkgutil.walk_packages(simpo_core.__path__, 'simpo_core.'):\n"
        "    importlib.import_module(info.name)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('prefect', 'mlflow'))\n"
        "print(','.join(bad))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""


def test_import_simpo_core_is_light():
    """`import simpo_core` and every command's flags must not pull torch in: `simpo --help` and
    every command start in a fraction of a second, and torch loads only for the work itself."""
    code = "import sys, simpo_core, flows.cli; flows.cli.build_parser(); print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_no_layer_imports_the_one_above():
    """Imports point downward: neither tasks/ nor simpo_core/ import flows/, and simpo_core
    does not import tasks/ (checked on the source, so lazy imports inside functions count)."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    forbidden = {"tasks": {"flows"}, "simpo_core": {"flows", "tasks", "prefect", "mlflow"}}
    found = []
    for package, above in forbidden.items():
        for path in sorted((root / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
                if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    names = [node.module]
                found += [f"{path.relative_to(root)}: {name}" for name in names if name.split(".")[0] in above]
    assert found == []


def test_every_package_map_names_its_modules():
    """Each package's docstring is its map: every module in it is named there (`name`)."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    missing = []
    for init in sorted([*(root / "simpo_core").rglob("__init__.py"), root / "tasks" / "helpers" / "__init__.py"]):
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        for module in sorted(init.parent.glob("*.py")):
            if module.name != "__init__.py" and f"`{module.stem}`" not in doc:
                missing.append(str(module.relative_to(root)))
        for package in sorted(p for p in init.parent.iterdir() if (p / "__init__.py").is_file()):
            if f"`{package.name}`" not in doc:
                missing.append(str(package.relative_to(root)))
    assert missing == []


def _unit_of(module: str, units: set[str]) -> str | None:
    """The part of simpo_core a dotted module name belongs to (None outside simpo_core or for the root)."""
    parts = module.split(".")
    return parts[1] if parts[0] == "simpo_core" and len(parts) > 1 and parts[1] in units else None


def _unit_imports() -> dict[str, dict[str, list[str]]]:
    """unit -> imported unit -> where (`path:line`), from every import statement, lazy ones too."""
    import ast
    from pathlib import Path

    package = Path(__file__).resolve().parents[2] / "simpo_core"
    units = {p.name for p in package.iterdir() if (p / "__init__.py").is_file()}
    units |= {p.stem for p in package.glob("*.py") if p.name != "__init__.py"}
    edges: dict[str, dict[str, list[str]]] = {}
    for path in sorted(package.rglob("*.py")):
        source = _unit_of(".".join(("simpo_core", *path.relative_to(package).with_suffix("").parts)), units)
        if source is None:
            continue  # the package root: lazy public names and the wiring of the embedded `tiny` build
        for node in ast.walk(ast.parse(path.read_text())):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
            for target in {_unit_of(name, units) for name in names} - {None, source}:
                edges.setdefault(source, {}).setdefault(target, []).append(f"{path.name}:{node.lineno}")
    return edges


def _cycles(edges: dict[str, dict[str, list[str]]]) -> list[list[str]]:
    """Every elementary cycle, each once, as a list of units starting at its smallest name."""
    found = set()

    def walk(path: list[str]) -> None:
        for target in edges.get(path[-1], {}):
            if target == path[0]:
                found.add(tuple(path))
            elif target not in path and target > path[0]:
                walk([*path, target])

    for start in edges:
        walk([start])
    return sorted(list(cycle) for cycle in found)


# Cycles known and accepted, each with why it is not broken: none today.
KNOWN_CYCLES: list[list[str]] = []


def test_no_import_cycle_between_the_parts_of_simpo_core():
    """The sub-packages (data, train, eval, ...) and the top-level modules (models, tiny_model,
    devices, threads, ...) import each other without a cycle, counting imports inside functions:
    a lazy import is still a dependency, only a later one."""
    edges = _unit_imports()
    cycles = [cycle for cycle in _cycles(edges) if cycle not in KNOWN_CYCLES]
    described = [
        " -> ".join(f"{a} ({', '.join(edges[a][b][:2])})" for a, b in zip(cycle, [*cycle[1:], cycle[0]]))
        for cycle in cycles
    ]
    assert described == []
    assert "train" not in edges.get("models", {})  # model resolution never reaches up into training
