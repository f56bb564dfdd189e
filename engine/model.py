"""The models of the slides and the initialization schemes.

`build_model` seeds, builds and initializes under one lock, because PyTorch's
default initialization draws from the process-wide RNG and two sessions (the
compare view) may build at the same time.
"""

from __future__ import annotations

import threading

import torch
from torch import nn

from engine.config import RunConfig

_ACTIVATIONS = {
    "relu": nn.ReLU,
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
    "gelu": nn.GELU,
}
# The gain kaiming_* uses for each activation (torch.nn.init.calculate_gain names).
_KAIMING_NONLINEARITY = {
    "relu": "relu",
    "leaky_relu": "leaky_relu",
    "tanh": "tanh",
    "sigmoid": "sigmoid",
    "elu": "relu",
    "gelu": "relu",
}

_GLOBAL_RNG_LOCK = threading.Lock()


def block_model(
    n_features: int, n_layers: int, hidden_units: int, activation: str, batch_norm: bool
) -> nn.Sequential:
    """h1..hN Linear layers each followed by a_i (and bn_i), then o = Linear(hidden, 1).

    With batch norm the hidden Linear layers lose their bias and
    BatchNorm1d(affine=False) comes after each activation, as in the slides.
    """
    model = nn.Sequential()
    width = n_features
    for i in range(1, n_layers + 1):
        model.add_module(f"h{i}", nn.Linear(width, hidden_units, bias=not batch_norm))
        model.add_module(f"a{i}", _ACTIVATIONS[activation]())
        if batch_norm:
            model.add_module(f"bn{i}", nn.BatchNorm1d(hidden_units, affine=False))
        width = hidden_units
    model.add_module("o", nn.Linear(width, 1))
    return model


def shallow_model(n_features: int, hidden_units: int, activation: str) -> nn.Sequential:
    """fc1, act, fc2: the regression model of the exploding-gradient slides."""
    model = nn.Sequential()
    model.add_module("fc1", nn.Linear(n_features, hidden_units))
    model.add_module("act", _ACTIVATIONS[activation]())
    model.add_module("fc2", nn.Linear(hidden_units, 1))
    return model


def initialize(model: nn.Module, scheme: str, activation: str, std: float) -> None:
    """Re-initialize every weight matrix with `scheme` and zero every bias.

    Modules are visited in `model.modules()` order, the order `model.apply`
    reaches the Linear layers of a Sequential, so RNG draws match the source.
    """
    if scheme == "default":
        return
    nonlinearity = _KAIMING_NONLINEARITY[activation]
    with torch.no_grad():
        for module in model.modules():
            for _name, param in module.named_parameters(recurse=False):
                if param.dim() < 2:
                    nn.init.zeros_(param)
                    continue
                if scheme == "normal":
                    nn.init.normal_(param, mean=0.0, std=std)
                elif scheme == "uniform":
                    nn.init.uniform_(param, -std, std)
                elif scheme == "xavier_uniform":
                    nn.init.xavier_uniform_(param)
                elif scheme == "xavier_normal":
                    nn.init.xavier_normal_(param)
                elif scheme == "kaiming_uniform":
                    nn.init.kaiming_uniform_(param, nonlinearity=nonlinearity)
                elif scheme == "kaiming_normal":
                    nn.init.kaiming_normal_(param, nonlinearity=nonlinearity)
                else:
                    raise ValueError(f"unknown init {scheme!r}")


def _build_unseeded(config: RunConfig) -> nn.Module:
    if config.model == "block":
        return block_model(
            config.n_features,
            config.n_layers,
            config.hidden_units,
            config.activation,
            config.batch_norm,
        )
    if config.model == "shallow":
        return shallow_model(config.n_features, config.hidden_units, config.activation)
    from engine.recurrent import recurrent_model

    return recurrent_model(config)


def build_model(config: RunConfig) -> tuple[nn.Module, torch.Generator]:
    """The seeded, initialized model and a generator continuing the global RNG.

    The returned generator holds the RNG state the source's script would have
    right after initialization; the run draws its shuffles from it.
    """
    with _GLOBAL_RNG_LOCK, torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = _build_unseeded(config)
        if config.init_seed is not None:
            torch.manual_seed(config.init_seed)
        initialize(model, config.init, config.activation, config.init_std)
        generator = torch.Generator()
        generator.set_state(torch.get_rng_state())
    return model, generator
