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
