"""The registered champion answers `mlflow models serve` with its generation params honoured,
to prompt strings as to prompt / messages rows."""

import json
import os
import urllib.error
import urllib.request

import pytest
from servers import BIN, free_port, server

FRUIT = "List some fruit words."


def _invoke(url: str, payload: dict) -> list[str]:
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.loads(response.read())["predictions"]


def test_served_champion_honours_max_new_tokens(run_flow, tmp_path):
    import mlflow

    summary = run_flow("train.max_steps=20", "train.save_steps=0")
    assert summary["promoted"], summary["promotion_reason"]
    uri = "models:/simpo-policy@champion"
    mlflow.set_tracking_uri(run_flow.tracking_uri)
    mlflow.set_registry_uri(run_flow.tracking_uri)
    signature = mlflow.models.get_model_info(uri).signature  # what the registry page shows
    assert {p.name: p.default for p in signature.params.params}["max_new_tokens"] == 64
    assert signature.inputs is None  # no schema holds both prompt strings and prompt/messages rows

    port = free_port()
    # The scoring server runs `uvicorn` from PATH: the venv's bin must be on it.
    env = {**os.environ, "MLFLOW_TRACKING_URI": run_flow.tracking_uri, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    command = [str(BIN / "mlflow"), "models", "serve", "-m", uri, "--env-manager", "local"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    with server(command, f"http://127.0.0.1:{port}/ping", tmp_path / "serve.log", env):
        url = f"http://127.0.0.1:{port}/invocations"
        prompts = {"dataframe_records": [{"prompt": "List some fruit words."}]}
        short = _invoke(url, {**prompts, "params": {"max_new_tokens": 3}})
        long = _invoke(url, {**prompts, "params": {"max_new_tokens": 40}})
        chat = _invoke(
            url,
            {
                "dataframe_records": [{"messages": [{"role": "user", "content": "List some fruit words."}]}],
                "params": {"max_new_tokens": 40},
            },
        )
        strings = _invoke(url, {"inputs": [FRUIT, FRUIT], "params": {"max_new_tokens": 40}})
        mixed = _invoke(
            url,
            {
                "dataframe_records": [{"prompt": FRUIT}, {"messages": [{"role": "user", "content": FRUIT}]}],
                "params": {"max_new_tokens": 40},
            },
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            _invoke(url, {"inputs": [{"text": FRUIT}]})
        refusal = refused.value.read().decode()
    # The tiny tokenizer is byte-level: 3 new tokens are at most 3 characters.
    assert len(short[0]) <= 3 < len(long[0])
    assert chat == long  # one user turn as `messages` renders exactly like `prompt`
    assert strings == mixed == long * 2  # a prompt string is that prompt, alone or mixed with rows
    assert refused.value.code == 400 and "send prompt strings" in refusal
    served = mlflow.pyfunc.load_model(uri)  # in Python, the same strings as `predict([...])`
    assert served.predict([FRUIT], params={"max_new_tokens": 40}) == long
