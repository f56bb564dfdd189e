"""The experiments of the source slides, each one preset away.

Each preset reproduces the slides' configuration exactly (seeds included), so
a plain PyTorch script with the same seeds gives the same step-0 numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.config import ConfigError, RunConfig


@dataclass(frozen=True)
class Preset:
    """A named configuration with a title and what the user should see."""

    name: str
    title: str
    explanation: str  # two lines: the setup, then what to watch for
    config: RunConfig


_BALL = RunConfig(dataset="ball", model="block", batch_size=1000, lr=0.01, epochs=2000)
_BAD_INIT = _BALL.replace(seed=13, init_seed=13)
_REGRESSION = RunConfig(
    dataset="regression",
    model="shallow",
    hidden_units=15,
    batch_size=32,
    shuffle=True,
    lr=0.01,
    epochs=10,
    seed=11,
)
_CLIPPED = _REGRESSION.replace(init="kaiming_uniform", init_seed=42, lr=0.1)
# A tanh RNN in its chaotic regime: every weight N(0, 0.5), so W_hh's gain is
# 0.5 * sqrt(32) = 2.8 > 1 and gradients grow exponentially backward in time.
_SEQUENCE = RunConfig(
    dataset="sequence",
    model="rnn",
    n_features=1,
    seq_len=60,
    hidden_units=32,
    activation="tanh",
    init="normal",
    init_std=0.5,
    seed=11,
    init_seed=13,
    lr=0.01,
    batch_size=32,
    shuffle=True,
    epochs=20,
)

PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            "block-default",
            "ReLU block model, PyTorch default init",
            "Five ReLU layers of 100 units with PyTorch's default initialization.\n"
            "The baseline: gradients shrink gently from the output back to h1.",
            _BALL.replace(activation="relu", seed=11),
        ),
        Preset(
            "sigmoid-normal",
            "Sigmoid + N(0, 0.1): gradients vanish",
            "Sigmoid activations with weights drawn from N(0, 0.1), biases zero.\n"
            "Watch h1's gradient fall ~1000x below h5's; activations sit near 0.5.",
            _BAD_INIT.replace(activation="sigmoid", init="normal", init_std=0.1),
        ),
        Preset(
            "tanh-xavier",
            "Tanh + Xavier uniform: balanced gradients",
            "Tanh activations with Xavier (Glorot) uniform initialization.\n"
            "Gradients are of similar size in every layer: the flow bars stay level.",
            _BAD_INIT.replace(activation="tanh", init="xavier_uniform"),
        ),
        Preset(
            "relu-kaiming",
            "ReLU + Kaiming uniform: balanced gradients",
            "ReLU activations with Kaiming (He) uniform init for nonlinearity='relu'.\n"
            "Gradients are of similar size in every layer: the flow bars stay level.",
            _BAD_INIT.replace(activation="relu", init="kaiming_uniform"),
        ),
        Preset(
            "relu-normal",
            "ReLU + N(0, 0.1): activations shrink",
            "ReLU activations with weights from N(0, 0.1), biases zero.\n"
            "Activations shrink layer by layer and the gradients of early layers fade.",
            _BAD_INIT.replace(activation="relu", init="normal", init_std=0.1),
        ),
        Preset(
            "relu-normal-bn",
            "ReLU + N(0, 0.1) + batch norm: restored",
            "The same bad init with BatchNorm1d(affine=False) after every activation.\n"
            "Batch norm restores the activations' scale and the gradient flow.",
            _BAD_INIT.replace(activation="relu", init="normal", batch_norm=True),
        ),
        Preset(
            "exploding",
            "Regression, lr 0.01, no clipping: explodes",
            "make_regression with a wide target (std ~132), SGD lr 0.01, no clipping.\n"
            "fc1's gradient grows by orders of magnitude until the loss turns NaN.",
            _REGRESSION,
        ),
        Preset(
            "clip-value",
            "Value clipping at 1.0 (after backward)",
            "Kaiming init, lr 0.1, clip_grad_value_(1.0) after backward.\n"
            "The loss falls from ~1e4 below 100; raw gradients exceed 1, applied ones don't.",
            _CLIPPED.replace(clip="value", clip_value=1.0),
        ),
        Preset(
            "clip-norm",
            "Norm clipping at 1.0 (L2, after backward)",
            "Kaiming init, lr 0.1, clip_grad_norm_(max_norm=1.0) after backward.\n"
            "The total norm is scaled down to 1 whenever it is larger; direction is kept.",
            _CLIPPED.replace(clip="norm", max_norm=1.0, norm_type="2"),
        ),
        Preset(
            "clip-hook",
            "Clamp hooks at 1.0 (during backward)",
            "Kaiming init, lr 0.1, a clamp(-1, 1) hook on every parameter's gradient.\n"
            "Same losses as clip-value; the recorded gradient is clamped during backward.",
            _CLIPPED.replace(clip="hook", clip_value=1.0),
        ),
        Preset(
            "standardized",
            "Standardized target: no explosion",
            "The exploding setup, but the target is standardized to mean 0, std 1.\n"
            "Gradients stay small and the loss falls without any clipping.",
            _REGRESSION.replace(standardize_target=True),
        ),
        Preset(
            "rnn-exploding",
            "Tanh RNN, 60 steps: gradients explode in time",
            "A tanh RNN recalls the first of 60 inputs; dL/dh_t grows ~1e6x back in time (gain 2.8).\n"
            "Set clip: value/norm clip the sum over time, hook each step's part, timestep dL/dh_t.",
            _SEQUENCE,
        ),
    )
}

DEFAULT_PRESET = "sigmoid-normal"


def get_preset(name: str) -> Preset:
    """The preset called `name`, or a ConfigError listing the known names."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(
            "preset", f"unknown preset {name!r} (known: {', '.join(PRESETS)})"
        ) from None


def register(preset: Preset) -> None:
    """Add a preset (used by modules that bring experiments beyond the slides)."""
    PRESETS[preset.name] = preset
