"""RunConfig validation and KEY=VALUE parsing: one ConfigError naming field and reason."""

from __future__ import annotations

import dataclasses
import math
from contextlib import contextmanager

import pytest

from engine.config import (
    CHOICES,
    FIELD_TYPES,
    ConfigError,
    RunConfig,
    field_comment,
    parse_value,
    split_assignment,
)
from engine.presets import DEFAULT_PRESET, PRESETS, get_preset

FIELDS = [f.name for f in dataclasses.fields(RunConfig)]

# Values of the wrong type for each declared type.
WRONG_TYPES = {
    "int": ["3", 2.5, True, None],
    "int | None": ["3", 2.5, True],
    "float": ["0.1", None, True],
    "bool": [1, "true", None],
    "str": [3, None, True],
}


@contextmanager
def raises_naming(field: str, match: str | None = None):
    """Expect one ConfigError that names `field` (and whose message contains `match`)."""
    with pytest.raises(ConfigError) as info:
        yield
    err = info.value
    assert err.field == field, f"named {err.field!r}, expected {field!r}: {err}"
    assert str(err) == f"{field}: {err.reason}" and err.reason
    assert "\n" not in str(err)
    if match is not None:
        assert match in str(err), str(err)


def test_defaults_and_every_preset_are_valid():
    RunConfig()
    for name, preset in PRESETS.items():
        assert preset.name == name and preset.title
        assert len(preset.explanation.splitlines()) == 2
        assert isinstance(preset.config, RunConfig)
    assert DEFAULT_PRESET in PRESETS


def test_every_field_is_typed_and_documented():
    assert set(FIELD_TYPES) == set(FIELDS)
    for name in FIELDS:
        assert field_comment(name), name
        assert FIELD_TYPES[name] in WRONG_TYPES, name


@pytest.mark.parametrize("name", FIELDS)
def test_wrong_type_names_the_field(name):
    for value in WRONG_TYPES[FIELD_TYPES[name]]:
        with raises_naming(name, "expected"):
            RunConfig(**{name: value})


@pytest.mark.parametrize("name,choices", sorted(CHOICES.items()))
def test_unknown_choice_names_the_field_and_the_choices(name, choices):
    with raises_naming(name, choices[0]):
        RunConfig(**{name: "bogus"})


OUT_OF_RANGE = [
    ("n_samples", 0),
    ("n_samples", 1_000_001),
    ("n_features", 0),
    ("n_layers", 0),
    ("n_layers", 65),
    ("hidden_units", 0),
    ("hidden_units", 8193),
    ("batch_size", 0),
    ("batch_size", 1001),  # more than n_samples
    ("epochs", 0),
    ("seq_len", 1),
    ("capture_every", 0),
    ("activation_every", 0),
    ("seed", -1),
    ("init_seed", -1),
    ("lr", 0.0),
    ("lr", -0.1),
    ("lr", math.nan),
    ("lr", math.inf),
    ("init_std", 0.0),
    ("init_std", math.inf),
    ("clip_value", 0.0),
    ("clip_value", -1.0),
    ("max_norm", 0.0),
    ("max_norm", math.nan),
    ("momentum", 1.0),
    ("momentum", -0.1),
    ("momentum", math.nan),
]


@pytest.mark.parametrize("name,value", OUT_OF_RANGE)
def test_out_of_range_names_the_field(name, value):
    with raises_naming(name):
        RunConfig(**{name: value})
    with raises_naming(name):  # replace validates like a new config
        RunConfig().replace(**{name: value})


@pytest.mark.parametrize(
    "changes,field",
    [
        ({"model": "rnn"}, "model"),  # the rnn needs the sequence dataset
        ({"dataset": "sequence"}, "model"),
        ({"clip": "timestep"}, "clip"),
        ({"standardize_target": True}, "standardize_target"),  # the ball has no target
    ],
)
def test_inconsistent_combinations_name_a_field(changes, field):
    with raises_naming(field):
        RunConfig(**changes)


def test_config_is_frozen():
    config = RunConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.lr = 1.0  # type: ignore[misc]


def test_with_assignments_parses_each_type():
    config = RunConfig().with_assignments(
        [
            "lr=1e-3",
            "epochs=7",
            " n_layers = 3 ",
            "batch_norm=true",
            "shuffle=off",
            "activation=tanh",
            "init_seed=5",
            "momentum=0",
            "norm_type=inf",
        ]
    )
    assert config.lr == 0.001 and type(config.lr) is float
    assert config.epochs == 7 and type(config.epochs) is int
    assert config.n_layers == 3
    assert config.batch_norm is True and config.shuffle is False
    assert config.activation == "tanh" and config.norm_type == "inf"
    assert config.init_seed == 5
    assert config.momentum == 0.0 and type(config.momentum) is float
    assert config.with_assignments(["init_seed=none"]).init_seed is None
    assert RunConfig().with_assignments([]) == RunConfig()
    assert RunConfig().with_assignments(["lr=0.5", "lr=0.25"]).lr == 0.25


@pytest.mark.parametrize("text", ["1", "true", "True", "YES", "on"])
def test_bool_spellings_true(text):
    assert parse_value("batch_norm", text) is True


@pytest.mark.parametrize("text", ["0", "false", "No", "off"])
def test_bool_spellings_false(text):
    assert parse_value("batch_norm", text) is False


@pytest.mark.parametrize(
    "assignment,field,mentions",
    [
        ("epochs=1.5", "epochs", "1.5"),
        ("epochs=ten", "epochs", "ten"),
        ("epochs=0", "epochs", "at least 1"),
        ("lr=fast", "lr", "fast"),
        ("lr=nan", "lr", "finite"),
        ("lr=-1", "lr", "greater than 0"),
        ("batch_norm=maybe", "batch_norm", "maybe"),
        ("activation=swish", "activation", "swish"),
        ("init_seed=x", "init_seed", "x"),
        ("bogus=1", "bogus", "unknown key"),
        ("lr0.1", "lr0.1", "="),
        ("=3", "--set", "empty key"),
        ("  =3", "--set", "empty key"),
    ],
)
def test_bad_assignment_names_it(assignment, field, mentions):
    with raises_naming(field, mentions):
        RunConfig().with_assignments([assignment])


def test_split_assignment_keeps_equals_in_the_value():
    assert split_assignment("activation= relu ") == ("activation", "relu")
    assert split_assignment("device=a=b") == ("device", "a=b")


def test_parse_value_rejects_unknown_key():
    with raises_naming("nope", "unknown key"):
        parse_value("nope", "1")


def test_unknown_preset_names_it():
    with raises_naming("preset", "no-such-preset"):
        get_preset("no-such-preset")
