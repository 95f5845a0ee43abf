"""Shared fixtures. Every test is marked by its folder: unit, integration or flows."""

from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).parent
PROJECT_ROOT = TESTS_DIR.parent
SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data"


def pytest_collection_modifyitems(items):
    for item in items:
        folder = Path(item.fspath).relative_to(TESTS_DIR).parts[0]
        if folder in ("unit", "integration", "flows"):
            item.add_marker(getattr(pytest.mark, folder))


@pytest.fixture(autouse=True)
def offline_and_local_state(monkeypatch, tmp_path_factory):
    """Every test runs offline, with Prefect/HF state in a temporary folder, never the home."""
    from simpo_core.env import OFFLINE_DEFAULTS

    for name, value in OFFLINE_DEFAULTS.items():
        monkeypatch.setenv(name, value)
    state = tmp_path_factory.getbasetemp() / "state"
    monkeypatch.setenv("HF_HOME", str(state / "hf"))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """The embedded tiny model saved once per test session."""
    from simpo_core.tiny_model import save_tiny

    return save_tiny(tmp_path_factory.mktemp("models") / "tiny")


@pytest.fixture
def dpo_en_demo_path() -> Path:
    """The shared ShareGPT sample; tests that use it skip where ../shared is absent."""
    path = SHARED_DATA / "dpo_en_demo.json"
    if not path.exists():
        pytest.skip(f"shared sample data not found at {path} (only present beside the team checkout)")
    return path
