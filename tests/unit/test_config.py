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


def test_a_preset_fills_only_the_fields_left_unset():
    config = SimPOConfig(preset="tiny", lr=0.05)
    assert (config.preset, config.lr, config.beta) == ("tiny", 0.05, PRESETS["tiny"][1]["beta"])
    assert SimPOConfig.preset("tiny", lr=0.05) == config == SimPOConfig.for_tiny(lr=0.05)


def test_auto_and_none_keep_the_library_defaults_without_a_model():
    assert SimPOConfig().preset == "auto"
    assert SimPOConfig(preset="none").model_dump(exclude={"preset"}) == SimPOConfig().model_dump(exclude={"preset"})


def test_auto_is_the_starting_models_own_preset():
    assert SimPOConfig.for_model({}, "tiny").lr == SimPOConfig.for_tiny().lr
    assert SimPOConfig.for_model({"lr": 0.01}, "tiny-scratch").sft_weight == 1.0
    assert SimPOConfig.for_model({}, "some-org/some-model").preset == "none"
    assert SimPOConfig.for_model({"preset": "none"}, "tiny").lr == 1e-6


def test_a_given_margin_replaces_the_presets():
    """llama3-8b-base: β 2, γ/β 0.5. A given γ 0.3 replaces the ratio; a given ratio 0.8 gives γ 1.6."""
    assert SimPOConfig.preset("llama3-8b-base", gamma=0.3).gamma == 0.3
    assert SimPOConfig.preset("llama3-8b-base", gamma_beta_ratio=0.8).gamma == pytest.approx(1.6)


def test_assignment_is_validated_and_keeps_the_preset():
    config = SimPOConfig.for_tiny()
    config.lr = 0.01
    assert (config.lr, config.beta, config.preset) == (0.01, 10.0, "tiny")
    with pytest.raises(ValueError, match="beta"):
        config.beta = 0
    copy = config.model_copy(update={"max_steps": 3})
    assert (copy.max_steps, copy.lr) == (3, 0.01)


def test_the_preset_leaves_the_training_identity_unchanged():
    """How the values were chosen is not what trains: the same values, the same identity."""
    from simpo_core.gate.identity import training_identity

    tiny = SimPOConfig.for_tiny()
    spelled_out = SimPOConfig(**{**tiny.model_dump(), "preset": "none"})
    identities = {training_identity("data", {}, c.model_dump(mode="json"), "model", "v1") for c in (tiny, spelled_out)}
    assert len(identities) == 1


def test_from_dict_names_every_bad_key_on_its_own_line():
    with pytest.raises(ConfigError) as error:
        SimPOConfig.from_dict({"beta": 0, "lora": {"rank": 8}, "lr_scheduler": "step"}, source="job.yaml")
    lines = str(error.value).splitlines()
    assert lines[0] == "invalid job.yaml:" and len(lines) == 4
    assert "  beta: Input should be greater than 0 (got 0)" in lines
    assert "  unknown key 'lora.rank': check its spelling against the documented fields" in lines


def test_a_cross_field_error_reads_as_the_loss_check_wrote_it():
    with pytest.raises(ConfigError, match="sigmoid loss only; set it to 0 for hinge"):
        SimPOConfig.from_dict({"loss_type": "hinge", "label_smoothing": 0.1})
