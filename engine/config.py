"""The run configuration: every knob of the slides, validated, immutable.

This module imports neither torch nor numpy, so the command line and the
dashboard's form can parse and check a configuration before torch has loaded.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from dataclasses import dataclass, fields
from typing import Any

DATASETS = ("ball", "regression", "sequence")
MODELS = ("block", "shallow", "rnn")
ACTIVATIONS = ("relu", "sigmoid", "tanh", "leaky_relu", "elu", "gelu")
INITS = (
    "default",
    "normal",
    "uniform",
    "xavier_uniform",
    "xavier_normal",
    "kaiming_uniform",
    "kaiming_normal",
)
OPTIMIZERS = ("sgd", "adam")
CLIPS = ("none", "value", "norm", "hook", "timestep")
NORM_TYPES = ("2", "inf")
ON_NONFINITE = ("pause", "stop", "continue")
DEVICES = ("auto", "cpu", "cuda")
SAMPLINGS = ("budget", "exact")

# Each knob's allowed choices; the form builds its Select widgets from this.
CHOICES: dict[str, tuple[str, ...]] = {
    "dataset": DATASETS,
    "model": MODELS,
    "activation": ACTIVATIONS,
    "init": INITS,
    "optimizer": OPTIMIZERS,
    "clip": CLIPS,
    "norm_type": NORM_TYPES,
    "on_nonfinite": ON_NONFINITE,
    "device": DEVICES,
    "sampling": SAMPLINGS,
}


class ConfigError(ValueError):
    """A configuration value is unusable; names the field and the reason."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


@dataclass(frozen=True)
class RunConfig:
    """One training experiment: data, model, initialization, optimizer, clipping.

    Every field is one knob of the source slides; the defaults are the slides'
    first experiment (the ReLU block model on the ball dataset).
    """

    # -- data --------------------------------------------------------------
    dataset: str = "ball"  # ball (vanishing), regression (exploding), sequence (rnn)
    n_samples: int = 1000  # points generated; the slides use 1000
    n_features: int = 10  # input dimensions; the ball's n_dims
    standardize_target: bool = False  # regression only: y -> (y - mean) / std
    seq_len: int = 60  # sequence dataset only: time steps per sequence
    # -- model -------------------------------------------------------------
    model: str = "block"  # block: h1..hN + o; shallow: fc1, act, fc2; rnn: tanh RNN
    n_layers: int = 5  # hidden Linear layers of the block model
    hidden_units: int = 100  # width of every hidden layer
    activation: str = "relu"  # the a_i modules (the rnn is always tanh)
    batch_norm: bool = False  # BatchNorm1d(affine=False) after each activation
    # -- initialization ----------------------------------------------------
    init: str = "default"  # default keeps PyTorch's reset_parameters()
    init_std: float = 0.1  # normal: the std; uniform: the half-width of the range
    seed: int = 11  # torch.manual_seed before building the model
    init_seed: int | None = None  # torch.manual_seed before init; None: no reseed
    # -- optimization ------------------------------------------------------
    optimizer: str = "sgd"  # sgd (with momentum) or adam
    lr: float = 0.01  # learning rate
    momentum: float = 0.0  # sgd only
    batch_size: int = 1000  # 1000 with 1000 samples is the slides' full batch
    shuffle: bool = False  # reshuffle each epoch, like DataLoader(shuffle=True)
    epochs: int = 2000  # the run finishes after this many epochs
    # -- clipping ----------------------------------------------------------
    clip: str = "none"  # none, value, norm (after backward), hook, timestep
    clip_value: float = 1.0  # value, hook and timestep: clamp to +-clip_value
    max_norm: float = 1.0  # norm: the total norm after clipping
    norm_type: str = "2"  # norm: "2" (L2) or "inf"
    # -- watching ----------------------------------------------------------
    on_nonfinite: str = "pause"  # what the session does at the first NaN/inf
    # The capture policy (benchmarks/README.md has the costs): the loss and the
    # total gradient norm (before and after clipping) on every step, so no NaN
    # goes unseen; each layer's gradient statistics and weight norm on step 0
    # and every `capture_every`-th step; activations, weight moments and
    # histograms, the expensive part, on step 0 and every `activation_every`-th
    # step. With sampling "budget" (the default) a fast run skips some of those,
    # evenly, so that statistics and activations each take at most 0.5% of the
    # run's time (engine.policy); "exact" never skips.
    capture_every: int = 1  # full gradient statistics every k-th step (and step 0)
    activation_every: int = 10  # activations and histograms every k-th step (and step 0)
    sampling: str = "budget"  # budget: skip captures beyond ~2% of the time; exact: never
    device: str = "auto"  # auto picks cuda when present; cuda without one fails

    def __post_init__(self) -> None:
        for f in fields(self):
            _check_type(f.name, getattr(self, f.name), f.type)
        for name, choices in CHOICES.items():
            value = getattr(self, name)
            if value not in choices:
                raise ConfigError(name, f"must be one of {', '.join(choices)} (got {value!r})")
        for name in ("n_features", "n_layers", "hidden_units", "batch_size"):
            _require(name, getattr(self, name) >= 1, "must be at least 1")
        # One sample has no spread: the ball's scaling and standardizing divide by it.
        _require("n_samples", self.n_samples >= 2, "must be at least 2")
        _require("epochs", self.epochs >= 1, "must be at least 1")
        _require("seq_len", self.seq_len >= 2, "must be at least 2")
        _require("capture_every", self.capture_every >= 1, "must be at least 1")
        _require("activation_every", self.activation_every >= 1, "must be at least 1")
        _require("seed", self.seed >= 0, "must be 0 or more")
        if self.init_seed is not None:
            _require("init_seed", self.init_seed >= 0, "must be 0 or more")
        for name in ("lr", "init_std", "clip_value", "max_norm"):
            value = getattr(self, name)
            _require(name, math.isfinite(value), "must be a finite number")
            _require(name, value > 0, "must be greater than 0")
        _require("momentum", math.isfinite(self.momentum), "must be a finite number")
        _require("momentum", 0 <= self.momentum < 1, "must be in [0, 1)")
        _require("n_layers", self.n_layers <= 64, "must be at most 64")
        _require("hidden_units", self.hidden_units <= 8192, "must be at most 8192")
        _require("n_samples", self.n_samples <= 1_000_000, "must be at most 1000000")
        _require("batch_size", self.batch_size <= self.n_samples, "must be at most n_samples")
        if self.batch_norm and self.model == "block":
            # BatchNorm1d cannot train on a batch of one sample (torch raises mid-run).
            _require("batch_size", self.batch_size >= 2, "batch norm needs at least 2 per batch")
            _require(
                "batch_size",
                self.n_samples % self.batch_size != 1,
                "with batch norm, n_samples % batch_size must not be 1 "
                "(the last batch of each epoch would hold a single sample)",
            )
        if self.dataset == "sequence" or self.model == "rnn":
            _require(
                "model",
                self.model == "rnn" and self.dataset == "sequence",
                "the rnn model and the sequence dataset go together",
            )
        if self.clip == "timestep":
            _require("clip", self.model == "rnn", "timestep clipping needs model=rnn")
        if self.standardize_target:
            _require(
                "standardize_target",
                self.dataset == "regression",
                "only the regression dataset has a target to standardize",
            )

    def replace(self, **changes: Any) -> RunConfig:
        """A copy with some fields changed, validated like a new config."""
        return dataclasses.replace(self, **changes)

    def with_assignments(self, assignments: Iterable[str]) -> RunConfig:
        """A copy with `KEY=VALUE` strings applied (the CLI's --set)."""
        changes: dict[str, Any] = {}
        for text in assignments:
            key, value = split_assignment(text)
            changes[key] = parse_value(key, value)
        return self.replace(**changes)

    def to_dict(self) -> dict[str, Any]:
        """The fields as plain values, in declaration order."""
        return dataclasses.asdict(self)


FIELD_TYPES: dict[str, str] = {f.name: str(f.type) for f in fields(RunConfig)}


def field_comment(name: str) -> str:
    """The one-line documentation of a field, for help text and the form."""
    return _FIELD_DOCS.get(name, "")


def split_assignment(text: str) -> tuple[str, str]:
    """Split `KEY=VALUE`, rejecting a missing `=`, an empty or unknown key."""
    if "=" not in text:
        raise ConfigError(text or "--set", "expected KEY=VALUE (no '=' found)")
    key, value = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError("--set", f"empty key in {text!r}")
    if key not in FIELD_TYPES:
        raise ConfigError(key, f"unknown key (known: {', '.join(FIELD_TYPES)})")
    return key, value.strip()


def parse_value(key: str, text: str) -> Any:
    """Convert the text of one field to its type, or raise ConfigError."""
    if key not in FIELD_TYPES:
        raise ConfigError(key, "unknown key")
    kind = FIELD_TYPES[key]
    text = text.strip()
    if kind == "bool":
        lowered = text.lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ConfigError(key, f"expected true or false, got {text!r}")
    if kind.startswith("int"):
        if kind.endswith("None") and text.lower() in ("", "none"):
            return None
        try:
            return int(text)
        except ValueError:
            raise ConfigError(key, f"expected an integer, got {text!r}") from None
    if kind == "float":
        try:
            value = float(text)
        except ValueError:
            raise ConfigError(key, f"expected a number, got {text!r}") from None
        return value
    return text


def _check_type(name: str, value: Any, kind: Any) -> None:
    kind = str(kind)
    if kind == "bool":
        ok = isinstance(value, bool)
    elif kind.startswith("int"):
        ok = (isinstance(value, int) and not isinstance(value, bool)) or (
            value is None and kind.endswith("None")
        )
    elif kind == "float":
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    else:
        ok = isinstance(value, str)
    if not ok:
        raise ConfigError(name, f"expected {kind}, got {type(value).__name__} {value!r}")


def _require(name: str, condition: bool, reason: str) -> None:
    if not condition:
        raise ConfigError(name, reason)


def _read_field_docs() -> dict[str, str]:
    """Harvest the trailing comment of each field from this module's source."""
    import inspect

    docs: dict[str, str] = {}
    for line in inspect.getsource(RunConfig).splitlines():
        head, _, comment = line.partition("#")
        if ":" in head and "=" in head and comment:
            docs[head.split(":", 1)[0].strip()] = comment.strip()
    return docs


_FIELD_DOCS = _read_field_docs()
