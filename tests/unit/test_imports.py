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
    """`import simpo_core` alone must not pull torch in (the CLI's --help stays fast)."""
    code = "import sys, simpo_core, flows.cli; print('torch' in sys.modules)"
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
