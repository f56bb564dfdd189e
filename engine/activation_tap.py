"""Forward hooks that keep each layer's activation, on the steps that measure them."""

from __future__ import annotations

import torch
from torch import nn


class ActivationTap:
    """Forward hooks that keep each layer's activation output on armed steps.

    A layer's activation is the parameterless module right after it in its
    parent (h1 -> a1), or the layer's own output where none follows (o, fc2).
    Modules called several times per forward (a recurrent cell) keep every call.
    The hooks exist only while armed: an unarmed forward pays nothing for them.
    """

    def __init__(self, model: nn.Module, layer_names: list[str]) -> None:
        self.model = model
        self.layer_names = layer_names
        self._handles: list = []
        self._kept: dict[str, list[torch.Tensor]] = {}
        self.sources = {name: self._activation_module(name) for name in layer_names}
        modules = dict(model.named_modules())
        self._modules = [
            (source, modules[source])
            for source in sorted(set(self.sources.values()))
            if source in modules
        ]

    def _activation_module(self, layer: str) -> str:
        owner = layer.rsplit(".", 1)[0] if "." in layer else layer
        modules = dict(self.model.named_modules())
        if owner not in modules:
            return ""
        parent_name, _, child = owner.rpartition(".")
        parent = modules.get(parent_name, self.model)
        children = list(parent.named_children())
        names = [n for n, _ in children]
        if child in names:
            following = children[names.index(child) + 1 :]
            if following and not any(True for _ in following[0][1].parameters()):
                follower = following[0][0]
                return f"{parent_name}.{follower}" if parent_name else follower
        return owner

    @property
    def armed(self) -> bool:
        """True while the hooks are registered (an activation step)."""
        return bool(self._handles)

    @armed.setter
    def armed(self, value: bool) -> None:
        if value and not self._handles:
            self._handles = [
                module.register_forward_hook(self._make_hook(source))
                for source, module in self._modules
            ]
        elif not value and self._handles:
            self._remove()

    def attach(self) -> None:
        """Nothing to register up front: hooks come with `armed = True`."""

    def _make_hook(self, source: str):
        def keep(module: nn.Module, inputs: tuple, output) -> None:
            if isinstance(output, torch.Tensor):
                self._kept.setdefault(source, []).append(output.detach())

        return keep

    def take(self) -> list[torch.Tensor | None]:
        """Each layer's kept activation (flattened over calls); forgets them and disarms."""
        outputs = []
        for name in self.layer_names:
            kept = self._kept.get(self.sources[name])
            if not kept:
                outputs.append(None)
            elif len(kept) == 1:
                outputs.append(kept[0].reshape(-1))
            else:
                outputs.append(torch.cat([k.reshape(-1) for k in kept]))
        self._kept = {}
        self.armed = False
        return outputs

    def _remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def close(self) -> None:
        """Remove the hooks and forget anything kept."""
        self._remove()
        self._kept = {}
