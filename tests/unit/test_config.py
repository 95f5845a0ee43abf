import pytest

from simpo_core.errors import ConfigError
from simpo_core.train.config import LoraSettings, SimPOConfig
from simpo_core.train.presets import PRESETS


def test_defaults_match_the_paper_and_the_seed_api():
    config = SimPOConfig()
    assert (config.beta, config.gamma, config.lr, config.batch_size) == (2.0, 1.0, 1e-6, 4)
    assert config.loss_type == "sigmoid" and config.lora is None


def test_every_field_is_described():
    for model in (SimPOConfig, LoraSettings):
        undescribed = [name for name, field in model.model_fields.items() if not field.description]
        assert undescribed == []


def test_gamma_beta_ratio_sets_gamma():
    """β = 2.5, γ/β = 0.55 → γ = 1.375."""
    assert SimPOConfig(beta=2.5, gamma_beta_ratio=0.55).gamma == pytest.approx(1.375)


def test_gamma_and_a_disagreeing_ratio_are_refused():
    with pytest.raises(ValueError, match="either gamma"):
        SimPOConfig(beta=2.0, gamma=1.0, gamma_beta_ratio=0.8)


def test_a_dumped_config_with_a_ratio_round_trips():
    config = SimPOConfig(beta=10, gamma_beta_ratio=0.3)
    assert SimPOConfig.model_validate(config.model_dump()) == config


def test_prompt_must_leave_room_for_the_response():
    with pytest.raises(ValueError, match="max_prompt_length"):
        SimPOConfig(max_length=128, max_prompt_length=128)


def test_hinge_with_label_smoothing_is_refused():
    with pytest.raises(ValueError, match="sigmoid loss only"):
        SimPOConfig(loss_type="hinge", label_smoothing=0.1)


@pytest.mark.parametrize(
    "field, value",
    [
        ("beta", 0),
        ("lr", -1),
        ("batch_size", 0),
        ("label_smoothing", 0.5),
        ("lr_scheduler", "step"),
        ("max_steps", -2),
        ("warmup_ratio", 1.5),
    ],
)
def test_out_of_range_values_are_refused(field, value):
    with pytest.raises(ValueError, match=field):
        SimPOConfig(**{field: value})


def test_from_yaml_names_an_unknown_key(tmp_path):
    path = tmp_path / "simpo.yaml"
    path.write_text("beta: 2.0\nlearning_rate: 1.0e-6\n")
    with pytest.raises(ConfigError, match="unknown key 'learning_rate'"):
        SimPOConfig.from_yaml(path)


def test_from_yaml_names_an_unknown_lora_key(tmp_path):
    path = tmp_path / "simpo.yaml"
    path.write_text("lora:\n  rank: 8\n")
    with pytest.raises(ConfigError, match="unknown key 'lora.rank'"):
        SimPOConfig.from_yaml(path)


def test_from_yaml_reads_fields_and_lora(tmp_path):
    path = tmp_path / "simpo.yaml"
    path.write_text("beta: 2.5\ngamma_beta_ratio: 0.4\nlr: 5.0e-7\nlora:\n  r: 8\n  target_modules: [q_proj, v_proj]\n")
    config = SimPOConfig.from_yaml(path)
    assert config.gamma == pytest.approx(1.0) and config.lr == 5e-7
    assert config.lora.r == 8 and config.lora.target_modules == ["q_proj", "v_proj"]


def test_missing_yaml_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        SimPOConfig.from_yaml(tmp_path / "nope.yaml")


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_validates(name):
    config = SimPOConfig.preset(name)
    assert config.beta > 0 and config.lr > 0


def test_paper_presets_keep_an_effective_batch_of_128():
    for name in PRESETS:
        if not name.startswith("tiny"):  # the embedded models' presets: `tiny` and `tiny-scratch`
            assert SimPOConfig.preset(name).effective_batch_size == 128


def test_tiny_preset_uses_a_large_learning_rate_and_accepts_overrides():
    config = SimPOConfig.for_tiny(max_steps=5)
    assert config.lr >= 1e-4 and config.max_steps == 5


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(ConfigError, match="llama3-8b-instruct"):
        SimPOConfig.preset("llama-4")
