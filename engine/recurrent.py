"""A tanh RNN unrolled by hand, so the gradient at every time step can be seen.

`nn.RNN` runs the recurrence inside one fused kernel and hides the hidden
states; here an `nn.RNNCell` named `cell` is looped over the sequence, and
each hidden state h_t gets a backward hook. The hook records |dL/dh_t| (the
gradient norm flowing back through time) and, with `clip="timestep"`, clamps
that gradient to +-clip_value before it travels on to h_{t-1} and into the
weights. That is clipping *inside* the recurrence: a hook on a parameter sees
only the gradient already summed over all time steps, after it has exploded.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from engine.clipping import ClipStrategy
from engine.config import RunConfig


class UnrolledRNN(nn.Module):
    """h_t = tanh(W_ih x_t + W_hh h_{t-1} + b), t = 1..T; the output o(h_T).

    Input (batch, time, features); output (batch, 1). `timestep_grad_norms()`
    returns |dL/dh_t| of the last backward, one entry per time step.
    """

    def __init__(
        self,
        n_features: int,
        hidden_units: int,
        clip_value: float | None = None,
        use_clip_value: float | None = None,
    ) -> None:
        super().__init__()
        self.cell = nn.RNNCell(n_features, hidden_units, nonlinearity="tanh")
        self.o = nn.Linear(hidden_units, 1)
        self.clip_value = clip_value  # None: record only; a number: clamp dL/dh_t at every step
        self.use_clip_value = use_clip_value  # clamp each time step's weight gradient (clip=hook)
        self._norms: list[torch.Tensor | None] = []
        self._raw: dict[str, torch.Tensor] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the cell over the time axis and read the output from the last state."""
        steps = x.shape[1]
        h = x.new_zeros(x.shape[0], self.cell.hidden_size)
        track = torch.is_grad_enabled()
        self._norms = [None] * steps
        per_use = track and self.use_clip_value is not None
        self._raw = {}
        for t in range(steps):
            if per_use:
                w_ih, w_hh, b_ih, b_hh = (self._use(n, p) for n, p in self.cell.named_parameters())
                h = torch.tanh(F.linear(x[:, t], w_ih, b_ih) + F.linear(h, w_hh, b_hh))
            else:
                h = self.cell(x[:, t], h)
            if track and h.requires_grad:
                h.register_hook(self._hook(t))
        if per_use:
            return F.linear(
                h, self._use("o.weight", self.o.weight), self._use("o.bias", self.o.bias)
            )
        return self.o(h)

    def _use(self, name: str, param: nn.Parameter) -> torch.Tensor:
        """A view of `param` for one use, whose backward hook clamps that use's gradient.

        A hook on the parameter itself fires once, on the gradient already summed
        over all time steps; a hook on each use clamps every time step's part.
        """
        name = name if "." in name else f"cell.{name}"
        use = param.view_as(param)
        if use.requires_grad:
            use.register_hook(self._use_hook(name))
        return use

    def _use_hook(self, name: str):
        def clamp_use(grad: torch.Tensor) -> torch.Tensor:
            # The unclamped parts add up to the raw gradient backward would give.
            previous = self._raw.get(name)
            self._raw[name] = grad if previous is None else previous + grad
            return grad.clamp(-self.use_clip_value, self.use_clip_value)

        return clamp_use

    def raw_parameter_grads(self) -> dict[str, torch.Tensor]:
        """Per parameter name, the unclamped gradient of the last per-use-clipped backward."""
        return self._raw

    def _hook(self, t: int):
        def at_step(grad: torch.Tensor) -> torch.Tensor | None:
            # The norm is taken before the clamp: it shows what clipping tamed.
            self._norms[t] = torch.linalg.vector_norm(grad.detach())
            if self.clip_value is None:
                return None
            return grad.clamp(-self.clip_value, self.clip_value)

        return at_step

    def timestep_grad_norms(self) -> torch.Tensor:
        """|dL/dh_t| of the last backward for t = 1..T (NaN where none flowed), on the device."""
        device = self.o.weight.device
        if not self._norms:
            return torch.zeros(0, device=device)
        missing = torch.full((), float("nan"), device=device)
        return torch.stack([n if n is not None else missing for n in self._norms])


def recurrent_model(config: RunConfig) -> UnrolledRNN:
    """The rnn model of `config`; it clamps through time when clip is "timestep".

    Initialization is left to engine.model.initialize (the config's `init`):
    with `normal`, every weight is N(0, init_std), so the recurrent matrix has
    gain init_std * sqrt(hidden_units); above 1 the tanh network is chaotic and
    its gradients grow exponentially backward through time.
    """
    clip_value = config.clip_value if config.clip == "timestep" else None
    use_clip_value = config.clip_value if config.clip == "hook" else None
    return UnrolledRNN(config.n_features, config.hidden_units, clip_value, use_clip_value)


class PerUseHookClip(ClipStrategy):
    """clip=hook on the RNN: every time step's weight gradient clamped during backward.

    The model registers the hooks (on each use of each parameter); this
    strategy reports the raw gradient they saw and what the clamps changed.
    """

    name = "hook"
    changes_gradients = True
    raw_is_grad = False

    def __init__(self, model: UnrolledRNN) -> None:
        self.model = model
        self._names: list[str] = []

    def attach(self, params: list[nn.Parameter]) -> None:
        super().attach(params)
        name_of = {id(p): n for n, p in self.model.named_parameters()}
        self._names = [name_of.get(id(p), "") for p in params]

    def raw_grads(self) -> list[torch.Tensor | None]:
        raw = self.model.raw_parameter_grads()
        return [raw.get(n, p.grad) for n, p in zip(self._names, self.params, strict=True)]

    def clipped_count(self, raw: list[torch.Tensor], raw_norms=None) -> torch.Tensor | None:
        applied = [p.grad for p in self.params if p.grad is not None]
        if not raw or len(applied) != len(raw):
            return None
        return (
            torch.stack([torch.count_nonzero(r != a) for r, a in zip(raw, applied, strict=True)])
            .sum()
            .float()
        )


def clip_for(config: RunConfig, model: nn.Module) -> ClipStrategy | None:
    """The RNN's own clip strategy where its model does the clipping, else None."""
    if config.model == "rnn" and config.clip == "hook" and isinstance(model, UnrolledRNN):
        return PerUseHookClip(model)
    return None
