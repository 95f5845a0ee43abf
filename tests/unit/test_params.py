import pytest

from flows.params import load_params
from simpo_core.errors import ConfigError
from simpo_core.settings import parse_override


def test_defaults_use_the_tiny_preset_for_the_tiny_model():
    from simpo_core.train.config import SimPOConfig

    params = load_params()
    assert params.model.source == "tiny"
    assert params.train.lr == SimPOConfig.for_tiny().lr
    assert params.train.lr > 1e-4


def test_other_models_get_the_library_defaults():
    params = load_params(None, ["model.source=some-org/some-model"])
    assert params.train.lr == 1e-6


def test_the_resolved_preset_is_recorded_and_can_be_chosen():
    """`train.preset: auto` becomes the model's own preset (what the run records); a named
    preset or `none` is taken as given, and user-given fields still win over it."""
    assert load_params().train.preset == "tiny"
    assert load_params(None, ["model.source=tiny-scratch"]).train.preset == "tiny-scratch"
    assert load_params(None, ["model.source=some-org/some-model"]).train.preset == "none"
    assert load_params(None, ["train.preset=none"]).train.lr == 1e-6  # the tiny model without its preset
    paper = load_params(None, ["model.source=some-org/m", "train.preset=llama3-8b-instruct", "train.lr=5e-7"]).train
    assert (paper.beta, paper.gamma, paper.lr) == (2.5, pytest.approx(2.5 * 0.55), 5e-7)


def test_a_given_margin_replaces_the_presets_either_way_it_is_spelled():
    """The tiny preset sets γ = 1 (β = 10); a user's γ/β = 0.3 gives γ = 10 × 0.3 = 3."""
    assert load_params(None, ["train.gamma_beta_ratio=0.3"]).train.gamma == pytest.approx(3.0)


def test_an_unknown_preset_lists_the_known_ones():
    with pytest.raises(ConfigError, match=r"train\.preset: .*'llama3-8b-instruct'"):
        load_params(None, ["train.preset=llama-4"])


def test_overrides_are_typed_by_yaml():
    params = load_params(None, ["train.max_steps=0", "audit.policy=rebalance", "eval.reward_model_path=null"])
    assert params.train.max_steps == 0 and params.audit.policy == "rebalance"


def test_user_training_fields_win_over_the_preset():
    assert load_params(None, ["train.lr=0.05"]).train.lr == 0.05


def test_config_file_and_overrides_merge(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("data:\n  heldout_fraction: 0.2\ntrain:\n  beta: 3.0\n")
    params = load_params(config, ["train.beta=4"])
    assert params.data.heldout_fraction == 0.2 and params.train.beta == 4.0


def test_unknown_key_names_the_dotted_path():
    with pytest.raises(ConfigError, match=r"unknown key 'train\.betta'"):
        load_params(None, ["train.betta=1"])


def test_every_bad_key_is_named_on_its_own_line():
    with pytest.raises(ConfigError) as error:
        load_params(None, ["train.betta=1", "data.heldout_fraction=1.5", "registry.gate=coin-flip"])
    lines = str(error.value).splitlines()
    assert lines[0] == "invalid parameters:" and len(lines) == 4
    assert "  data.heldout_fraction: Input should be less than 1 (got 1.5)" in lines[1:]


def test_a_missing_config_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_params(tmp_path / "nope.yaml")


def test_bad_value_names_the_field():
    with pytest.raises(ConfigError, match=r"data\.heldout_fraction"):
        load_params(None, ["data.heldout_fraction=1.5"])


def test_override_without_equals_is_refused():
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_override("train.max_steps")


def test_reward_model_judge_needs_a_path():
    with pytest.raises(ConfigError, match="reward_model_path"):
        load_params(None, ["eval.judge=reward-model"])


def test_config_reference_doc_is_current():
    from pathlib import Path

    from flows.config_reference import render_reference

    doc = Path(__file__).resolve().parents[2] / "docs" / "config.md"
    assert doc.read_text() == render_reference(), "regenerate: python -m flows.config_reference > docs/config.md"


@pytest.mark.parametrize(
    "override, field",
    [
        ("train.beta=0", "train.beta"),
        ("train.beta=-1", "train.beta"),
        ("train.batch_size=four", "train.batch_size"),
        ("train.max_prompt_length=600", "max_prompt_length (600) must be smaller than max_length"),
        ("audit.policy=ignore", "audit.policy"),
        ("registry.min_gain=-0.1", "registry.min_gain"),
        ("registry.gate=coin-flip", "registry.gate"),
    ],
)
def test_bad_values_are_refused_naming_the_field(override, field):
    with pytest.raises(ConfigError) as error:
        load_params(None, [override])
    assert field in str(error.value)


def test_bad_config_is_refused_before_any_work(tmp_path):
    """`simpo run` with a bad key or a missing model writes nothing: no run folder, no store."""
    import subprocess
    import sys

    for args in (
        ["--set", "train.betta=1"],
        ["--model", str(tmp_path / "missing-model")],
        ["--model", "some-org/not-in-cache"],
    ):
        result = subprocess.run(
            [sys.executable, "-m", "flows.cli", "run", *args], cwd=tmp_path, capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 1 and result.stderr.startswith("error: ")
    written = sorted(str(path.relative_to(tmp_path)) for path in tmp_path.rglob("*"))
    assert set(written) <= {".simpo", ".simpo/prefect"}, written  # no run folder, no MLflow store, no model


def test_training_config_takes_lora_and_remote_code_from_the_model_group():
    from flows.model_steps import training_config

    config = training_config(load_params(None, ["model.lora={r: 4}"]))
    assert config.lora.r == 4
    assert training_config(load_params()).lora is None
