"""Start real `prefect server` and `mlflow server` processes on 127.0.0.1 for tests."""

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(url: str, process: subprocess.Popen, log: Path, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"{url} not healthy after {timeout} s: {log.read_text()[-2000:]}")


@contextmanager
def server(command: list[str], health_url: str, log: Path, env: dict[str, str]):
    """Run a server in its own process group; stop the whole group on exit."""
    with log.open("w") as handle:
        process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        wait_for(health_url, process, log)
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)


@dataclass(frozen=True)
class BasicAuth:
    """The admin account of an MLflow server started with `--app-name basic-auth`."""

    username: str
    password: str  # MLflow requires at least 12 characters


def basic_auth_env(folder: Path, auth: BasicAuth) -> dict[str, str]:
    """Environment of a basic-auth MLflow server: its own config, user store and admin account."""
    config = folder / "basic_auth.ini"
    # NO_PERMISSIONS: an account other than the admin sees nothing until it is granted access.
    # auth_cache_ttl_seconds: the deployment's setting (deployments/README.md, "Secured servers").
    config.write_text(
        "[mlflow]\n"
        "default_permission = NO_PERMISSIONS\n"
        f"database_uri = sqlite:///{folder / 'basic_auth.db'}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        "auth_cache_ttl_seconds = 60\n"
    )
    return {
        "MLFLOW_AUTH_CONFIG_PATH": str(config),
        "MLFLOW_AUTH_ADMIN_USERNAME": auth.username,
        "MLFLOW_AUTH_ADMIN_PASSWORD": auth.password,
        "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(16),
    }


@contextmanager
def mlflow_server(folder: Path, port: int | None = None, auth: BasicAuth | None = None):
    """An MLflow tracking server with a sqlite backend; yields its URL.

    With `auth`, the server runs MLflow's basic-auth app: every request but /health needs the
    admin's (or another user's) credentials.
    """
    port = port or free_port()
    command = [
        str(BIN / "mlflow"),
        "server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--backend-store-uri",
        f"sqlite:///{folder / 'mlflow.db'}",
        "--artifacts-destination",
        str(folder / "artifacts"),
    ]
    # The pipeline runs no MLflow server jobs (GenAI evaluations, trace roll-ups); without them
    # the server does not start four job-consumer processes, which doubled its start-up time
    # on a 2-core machine (26 s against 12-17 s, measured under load 6-7).
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    if auth is not None:
        command += ["--app-name", "basic-auth"]
        env.update(basic_auth_env(folder, auth))
    with server(command, f"http://127.0.0.1:{port}/health", folder / "mlflow-server.log", env) as process:
        yield f"http://127.0.0.1:{port}", process


@contextmanager
def prefect_server(folder: Path, auth_string: str | None = None):
    """A Prefect API server with its own PREFECT_HOME; yields its API URL.

    With `auth_string`, the server refuses every API request (but the health check) that does
    not carry it; clients send it from PREFECT_API_AUTH_STRING.
    """
    port = free_port()
    env = {**os.environ, "PREFECT_HOME": str(folder / "prefect-home"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    env.pop("PREFECT_API_URL", None)
    if auth_string is not None:
        env["PREFECT_SERVER_API_AUTH_STRING"] = auth_string
    command = [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port), "--no-ui"]
    with server(command, f"http://127.0.0.1:{port}/api/health", folder / "prefect-server.log", env):
        yield f"http://127.0.0.1:{port}/api"


@contextmanager
def prefect_api(api_url: str, auth_string: str | None = None):
    """This process's Prefect client settings pointed at `api_url` (with `auth_string` for a
    secured server). On the way out the events worker that connected there is drained (while
    that server still runs) and dropped: it keeps the address it first connected to, and would
    send every later event of this test process (task run states among them) to a server that
    is gone, instead of the harness's."""
    from prefect.events.worker import EventsWorker
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

    settings = {PREFECT_API_URL: api_url}
    if auth_string is not None:
        settings[PREFECT_API_AUTH_STRING] = auth_string
    with temporary_settings(settings):
        try:
            yield api_url
        finally:
            EventsWorker.drain_all(timeout=30, at_exit=False)
