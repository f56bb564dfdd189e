"""What people use today to watch gradients, as bench_probe runs them beside the bare loop.

The slides' capture_gradients (every gradient kept, every step), TensorBoard's
add_histogram per layer per step, and per-layer `.item()` statistics.
"""

from __future__ import annotations

import importlib.util
import shutil
import tempfile

import torch
from torch import nn

from benchmarks.loops import Loop, Variant


class Source(Variant):
    """The slides' StepByStep.capture_gradients: a hook per parameter keeping every gradient.

    `tolist` is the source exactly (`grad.tolist()` appended each step); `clone`
    keeps tensors instead, the cheapest way to keep whole gradients. What was
    kept is dropped at `stop`, or a block of the large model would not fit.
    """

    def __init__(self, loop: Loop, mode: str = "tolist") -> None:
        super().__init__(loop)
        self.mode = mode
        self.kept: dict[str, list] = {}
        self.handles: list = []

    def start(self) -> None:
        for module_name, module in self.loop.model.named_modules():
            if isinstance(module, nn.Linear):
                for param_name, param in module.named_parameters():
                    key = f"{module_name}.{param_name}"
                    self.kept[key] = []
                    self.handles.append(param.register_hook(self._log(key)))

    def _log(self, key: str):
        keep = self.kept[key]
        if self.mode == "tolist":
            return lambda grad: keep.append(grad.tolist())
        return lambda grad: keep.append(grad.detach().clone())

    def stop(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles, self.kept = [], {}


class TensorBoard(Variant):
    """SummaryWriter.add_histogram of every layer's weight gradient, every step."""

    @staticmethod
    def available() -> bool:
        """Whether tensorboard can be imported (`bash setup.sh --bench` installs it)."""
        return importlib.util.find_spec("tensorboard") is not None

    def start(self) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.directory = tempfile.mkdtemp(prefix="gradtui-bench-tb-")
        self.writer = SummaryWriter(self.directory)

    def stop(self) -> None:
        self.writer.close()
        shutil.rmtree(self.directory, ignore_errors=True)

    def step(self) -> None:
        loop = self.loop
        loss = loop.backward()
        for name, param in zip(loop.layer_names, loop.layers, strict=True):
            self.writer.add_histogram(f"grad/{name}", param.grad, self.step_index)
        loop.optimizer.step()
        self.writer.add_scalar("loss", loss.item(), self.step_index)
        self.step_index += 1


class Naive(Variant):
    """The statistics gradtui captures, written the obvious way: `.item()` per number."""

    def step(self) -> None:
        loop = self.loop
        loss = loop.backward()
        stats = {}
        with torch.no_grad():
            for name, param in zip(loop.layer_names, loop.layers, strict=True):
                g = param.grad
                stats[name] = (
                    g.mean().item(),
                    g.std().item(),
                    g.norm().item(),
                    g.abs().max().item(),
                    param.mean().item(),
                    param.std().item(),
                )
        loop.optimizer.step()
        stats["loss"] = loss.item()
        self.step_index += 1
