"""Saving and loading a RunConfig as TOML, and one-line errors that name the field."""

import pytest
import tomllib

from engine.config import ConfigError, RunConfig
from engine.config_io import config_from_toml, config_to_toml, load_config, save_config
from engine.presets import PRESETS


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_round_trips(name, tmp_path):
    config = PRESETS[name].config
    path = save_config(config, tmp_path / f"{name}.toml", title=PRESETS[name].title)
    assert load_config(path) == config
    # What we write is TOML any parser reads, None spelled "none".
    data = tomllib.loads(path.read_text())
    expected = {k: "none" if v is None else v for k, v in config.to_dict().items()}
    assert data == expected


def test_the_file_documents_itself_and_handles_none():
    config = RunConfig(init_seed=None, lr=1e-05, clip="norm")
    text = config_to_toml(config, "my run")
    assert text.startswith("# my run\n")
    assert "lr = 1e-05  # learning rate" in text
    assert 'init_seed = "none"' in text
    assert config_from_toml(text) == config
    assert config_from_toml(config_to_toml(RunConfig(init_seed=0))).init_seed == 0


def test_a_base_config_fills_what_the_file_leaves_out(tmp_path):
    base = PRESETS["sigmoid-normal"].config
    assert config_from_toml("lr = 0.5", base) == base.replace(lr=0.5)
    # A saved file is complete: loading it over any base gives it back, None included.
    saved = RunConfig(init_seed=None, activation="tanh")
    path = save_config(saved, tmp_path / "run.toml")
    assert load_config(path, base=base) == saved
    assert config_from_toml('init_seed = "None"', base).init_seed is None
    # A preset named in the file wins over the base.
    assert config_from_toml('preset = "relu-kaiming"', base) == PRESETS["relu-kaiming"].config


def test_a_preset_plus_changes():
    config = config_from_toml('preset = "rnn-exploding"\nclip = "timestep"\nlr = 1\n')
    assert config == PRESETS["rnn-exploding"].config.replace(clip="timestep", lr=1.0)
    assert isinstance(config.lr, float)
    assert config_from_toml("") == RunConfig()


@pytest.mark.parametrize(
    ("text", "field", "words"),
    [
        ("lr = ", "config", "not valid TOML"),
        ("lr = 0.1\nlr = 0.2", "config", "not valid TOML"),
        ("learning_rate = 0.1", "learning_rate", "unknown key"),
        ("[run]\nlr = 0.1", "run", "unknown key"),
        ('lr = "fast"', "lr", "expected a number, got string 'fast'"),
        ("epochs = 2.5", "epochs", "expected an integer"),
        ("batch_norm = 1", "batch_norm", "expected true or false"),
        ("seed = true", "seed", "expected an integer, got boolean"),
        ('init_seed = "never"', "init_seed", 'expected an integer or "none"'),
        ('clip = "sometimes"', "clip", "must be one of"),
        ("lr = -1.0", "lr", "greater than 0"),
        ("lr = nan", "lr", "finite"),
        ('preset = "nope"', "preset", "unknown preset"),
        ("preset = 3", "preset", "expected a preset name"),
        ('clip = "timestep"', "clip", "needs model=rnn"),
    ],
)
def test_bad_files_name_the_field(text, field, words):
    with pytest.raises(ConfigError) as caught:
        config_from_toml(text)
    assert caught.value.field == field
    assert words in caught.value.reason
    assert "\n" not in str(caught.value)


def test_file_errors(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "missing.toml")
    assert caught.value.field == "config" and "cannot read" in caught.value.reason
    (tmp_path / "binary.toml").write_bytes(b"\xff\xfe\x00lr")
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "binary.toml")
    assert caught.value.field == "config"
    with pytest.raises(ConfigError) as caught:
        save_config(RunConfig(), tmp_path / "no-such-dir" / "run.toml")
    assert caught.value.field == "config" and "cannot write" in caught.value.reason
    path = save_config(RunConfig(), tmp_path / "run.toml")
    save_config(RunConfig(lr=0.5), path)  # overwriting is fine and atomic
    assert load_config(path).lr == 0.5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["binary.toml", "run.toml"]
