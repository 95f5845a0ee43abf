"""Shared fixtures. Every test is marked by its folder: unit, integration or flows."""

import os
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).parent
PROJECT_ROOT = TESTS_DIR.parent
SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data"


def pytest_configure(config):
    """Under pytest-xdist (`make test` runs `-n 3`) the workers share the machine's cores: each
    gets its share as OMP_NUM_THREADS, which torch reads at import, the thread rule of every
    training and evaluation caps itself with (simpo_core.threads) and the processes a test
    starts inherit. Two workers that each run torch on every core spin against each other
    (docs/performance.md, "Threads and concurrent jobs"). An OMP_NUM_THREADS the user set is kept."""
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if workers and "OMP_NUM_THREADS" not in os.environ:
        from simpo_core.threads import available_cores

        os.environ["OMP_NUM_THREADS"] = str(max(1, available_cores() // int(workers)))


def pytest_collection_modifyitems(items):
    for item in items:
        folder = Path(item.fspath).relative_to(TESTS_DIR).parts[0]
        if folder in ("unit", "integration", "flows"):
            item.add_marker(getattr(pytest.mark, folder))
    # The tests marked slow (files of half a minute or more) first, then the rest in collection
    # order (flows, integration, unit): workers that start the long files early finish together
    # on the short unit tests, instead of one of them running a long file alone at the end.
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


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


SAMPLE_DATA = TESTS_DIR / "data" / "dpo_en_demo_sample.json"
# What each ShareGPT file holds: records, valid after validation, duplicates, system turns, multi-turn.
DPO_EN_DEMO_FACTS = {
    "dpo_en_demo_sample.json": {"records": 21, "valid": 20, "duplicates": 1, "system": 4, "multi_turn": 9},
    "dpo_en_demo.json": {"records": 300, "valid": 295, "duplicates": 5, "system": 80, "multi_turn": 186},
}


@pytest.fixture(params=["sample", "shared"])
def dpo_en_demo_path(request) -> Path:
    """Real ShareGPT data: the sample shipped in tests/data (always), and the whole shared file
    (only beside the team checkout; skipped elsewhere). `DPO_EN_DEMO_FACTS[path.name]` says what
    each holds."""
    if request.param == "sample":
        return SAMPLE_DATA
    path = SHARED_DATA / "dpo_en_demo.json"
    if not path.exists():
        pytest.skip(f"shared sample data not found at {path} (only present beside the team checkout)")
    return path


@pytest.fixture
def grouped_query_llama():
    """A builder of a small seeded Llama with grouped-query attention (4 heads, 2 key/value heads),
    untied head and SDPA attention: the shape the packed and chunked paths must handle."""

    def build(vocab_size: int = 32, hidden_size: int = 32, seed: int = 5):
        import torch
        from transformers import LlamaConfig, LlamaForCausalLM

        torch.manual_seed(seed)
        config = LlamaConfig(
            vocab_size=vocab_size,
            hidden_size=hidden_size,
            intermediate_size=2 * hidden_size,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=64,
            tie_word_embeddings=False,
        )
        config._attn_implementation = "sdpa"
        return LlamaForCausalLM(config)

    return build


@pytest.fixture(scope="session")
def tiny_reward_model_dir(tmp_path_factory) -> Path:
    """A tiny sequence-classification reward model (random weights, the tiny tokenizer) saved once:
    it scores different answers differently, which is all a judge's plumbing needs."""
    import torch
    from transformers import LlamaConfig, LlamaForSequenceClassification

    from simpo_core.tiny_model import build_tiny_tokenizer

    folder = tmp_path_factory.mktemp("models") / "reward-model"
    tokenizer = build_tiny_tokenizer()
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        num_labels=1,
        pad_token_id=tokenizer.pad_token_id,
    )
    LlamaForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
