import logging
from pathlib import Path

from flows.params import load_params
from simpo_core.train.config import SimPOConfig

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def test_trust_remote_code_is_off_by_default_everywhere():
    params = load_params()
    assert params.model.trust_remote_code is False and "trust_remote_code" not in SimPOConfig.model_fields


def test_trust_remote_code_travels_in_the_training_job(tmp_path):
    """The flow's model.trust_remote_code reaches the worker (in-process or under torchrun) in the job file."""
    from simpo_core.train.worker import TrainJob, read_job

    trusted = TrainJob("tiny", tmp_path / "train.jsonl", None, SimPOConfig(), trust_remote_code=True)
    assert read_job(trusted.write(tmp_path / "trusted.yaml")).trust_remote_code is True
    default = TrainJob("tiny", tmp_path / "train.jsonl", None, SimPOConfig())
    assert read_job(default.write(tmp_path / "default.yaml")).trust_remote_code is False


def test_trust_remote_code_when_enabled_is_logged(tiny_model_dir, caplog):
    from simpo_core.models import load_tokenizer

    with caplog.at_level(logging.WARNING):
        load_tokenizer(str(tiny_model_dir), trust_remote_code=True)
    assert "trust_remote_code is ON" in caplog.text


def test_project_never_binds_servers_beyond_loopback():
    """Every server command the project documents or starts binds 127.0.0.1."""
    files = [
        *PROJECT_ROOT.glob("*.md"),
        *(PROJECT_ROOT / "deployments").glob("*"),
        *(PROJECT_ROOT / "tests").rglob("*.py"),
        *(PROJECT_ROOT / "flows").rglob("*.py"),
    ]
    texts = [path.read_text() for path in files if path.resolve() != Path(__file__).resolve()]
    for text in texts:
        for line in text.splitlines():
            if ("server start" in line or "mlflow ui" in line or "mlflow server" in line) and "--host" in line:
                assert "--host 127.0.0.1" in line or '"--host", "127.0.0.1"' in line, line
    assert not any("0.0.0.0" in text for text in texts)


def test_weights_load_only_from_safetensors(tiny_model_dir, tmp_path):
    """A pickle checkpoint (pytorch_model.bin) is refused: loading it can run code."""
    import pytest
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from simpo_core.errors import ConfigError
    from simpo_core.models import load_model_and_tokenizer

    assert (tiny_model_dir / "model.safetensors").exists() and not list(tiny_model_dir.glob("*.bin"))
    pickled = tmp_path / "pickled"
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    model.config.save_pretrained(pickled)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(pickled)
    torch.save(model.state_dict(), pickled / "pytorch_model.bin")
    with pytest.raises(ConfigError, match="safetensors"):
        load_model_and_tokenizer(str(pickled))


def test_run_folders_cannot_escape_the_output_dir(tmp_path):
    import pytest

    from flows.retrain import run_folder
    from simpo_core.errors import ConfigError

    assert run_folder(str(tmp_path), "3f2a-uuid") == tmp_path.resolve() / "3f2a-uuid"
    for hostile in ("../outside", "/etc", "a/../../b", ".."):
        with pytest.raises(ConfigError, match="escape"):
            run_folder(str(tmp_path), hostile)
