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

from engine.config import RunConfig


class UnrolledRNN(nn.Module):
    """h_t = tanh(W_ih x_t + W_hh h_{t-1} + b), t = 1..T; the output o(h_T).

    Input (batch, time, features); output (batch, 1). `timestep_grad_norms()`
    returns |dL/dh_t| of the last backward, one entry per time step.
    """

    def __init__(self, n_features: int, hidden_units: int, clip_value: float | None = None) -> None:
        super().__init__()
        self.cell = nn.RNNCell(n_features, hidden_units, nonlinearity="tanh")
        self.o = nn.Linear(hidden_units, 1)
        self.clip_value = clip_value  # None: record only; a number: clamp at every step
        self._norms: list[torch.Tensor | None] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the cell over the time axis and read the output from the last state."""
        steps = x.shape[1]
        h = x.new_zeros(x.shape[0], self.cell.hidden_size)
        track = torch.is_grad_enabled()
        self._norms = [None] * steps
        for t in range(steps):
            h = self.cell(x[:, t], h)
            if track and h.requires_grad:
                h.register_hook(self._hook(t))
        return self.o(h)

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
    return UnrolledRNN(config.n_features, config.hidden_units, clip_value)
