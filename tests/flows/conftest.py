"""Flow tests: one Prefect test harness per session, MLflow stores in temporary folders.

Under pytest-xdist each worker is a session of its own (its own harness, its own temporary
folders), and `--dist loadfile` runs each test file on one worker: a flow run that several
tests read is a module-scoped fixture of their file (test_first_run.py), made once.
"""

import warnings
from contextlib import contextmanager

import pytest
from flow_workspace import FlowWorkspace

HARNESS_DRAIN_SECONDS = 60


@contextmanager
def bounded_harness_drain(seconds: float = HARNESS_DRAIN_SECONDS):
    """Give up on the Prefect test harness's final drain of its log and event workers after
    `seconds`. At the end of a session that ran many flows (threads, a Dask cluster), that drain
    can wait forever on a worker that never answers, and the test process then never exits;
    the server it drains to is stopped right after, so nothing a test checks is lost."""
    import asyncio

    import prefect.testing.utilities as harness

    original = harness.run_coro_as_sync

    def bounded(coroutine, *args, **kwargs):
        async def within_time():
            try:
                return await asyncio.wait_for(coroutine, seconds)
            except TimeoutError:
                warnings.warn(f"the Prefect test harness did not drain within {seconds} s; stopping it", stacklevel=1)

        return original(within_time(), *args, **kwargs)

    harness.run_coro_as_sync = bounded
    try:
        yield
    finally:
        harness.run_coro_as_sync = original


@pytest.fixture(scope="session")
def prefect_harness(tmp_path_factory):
    import os

    home = tmp_path_factory.mktemp("prefect-home")
    previous = os.environ.get("PREFECT_HOME")
    os.environ["PREFECT_HOME"] = str(home)
    from prefect.testing.utilities import prefect_test_harness

    with bounded_harness_drain(), prefect_test_harness(server_startup_timeout=90):
        yield
    if previous is None:
        os.environ.pop("PREFECT_HOME", None)
    else:
        os.environ["PREFECT_HOME"] = previous


@pytest.fixture
def run_flow(prefect_harness, tmp_path, monkeypatch, tiny_model_dir) -> FlowWorkspace:
    """A workspace of this test's own in `tmp_path`, which is also the test's working directory.

    The SFT'd default `tiny` is covered by tests/integration/test_sft.py.
    """
    monkeypatch.chdir(tmp_path)
    return FlowWorkspace(tmp_path, tiny_model_dir)
