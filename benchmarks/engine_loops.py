"""The engine's own step as `gradtui run` drives it, and the bare loop held against it.

`Engine` is what `gradtui run` does each step (Trainer.step, History.append,
optionally a JSONL export); `EngineBare` is a bare loop drawing its batches
as the Trainer does. bench_probe and bench_gpu interleave them like the
probe's variants (benchmarks.loops).
"""

from __future__ import annotations

import shutil
import tempfile
import time

import torch

from benchmarks.loops import Loop, Variant, skip_gap
from engine.config import RunConfig
from engine.data import EpochBatches, make_tensors
from engine.model import build_model


class EngineBare(Variant):
    """A bare loop drawing its batches as the Trainer does (shuffled epochs included)."""

    def __init__(self, config: RunConfig) -> None:
        from engine.trainer import resolve_device

        super().__init__(Loop(config))
        device = resolve_device(config.device)  # where the Trainer of `config` trains
        X, y = make_tensors(config)
        model, generator = build_model(config)
        self.loop.model = model.to(device)
        self.loop.optimizer = torch.optim.SGD(model.parameters(), lr=config.lr)
        self.batches = EpochBatches(
            X.to(device), y.to(device), config.batch_size, config.shuffle, generator
        )
        self._epoch = iter(())

    def step(self) -> None:
        batch = next(self._epoch, None)
        if batch is None:
            self._epoch = self.batches.epoch()
            batch = next(self._epoch)
        loop = self.loop
        loss = loop.loss_fn(loop.model(batch[0]), batch[1])
        loop.optimizer.zero_grad()
        loss.backward()
        loop.optimizer.step()
        loss.item()


class Engine(Variant):
    """What `gradtui run` does each step: Trainer.step, History.append, optionally JSONL."""

    def __init__(self, config: RunConfig, export: bool = False) -> None:
        from engine.history import History
        from engine.trainer import Trainer

        super().__init__(None)
        self.trainer = Trainer(config)
        self.history = History()
        self.export = export
        self.writer = None
        self._stopped: float | None = None

    def start(self) -> None:
        # One file for all of a set's blocks, as a run writes one: the writer
        # formats 64 records at a time (engine.export), and a file opened for
        # each 10- or 60-step block never formatted a line inside one.
        if self.export and self.writer is None:
            from engine.export import RecordWriter

            self.directory = tempfile.mkdtemp(prefix="gradtui-bench-out-")
            self.writer = RecordWriter(f"{self.directory}/run.jsonl")
        skip_gap(self.trainer.policy, self._stopped)  # last: starting is no step's time

    def stop(self) -> None:
        self._stopped = time.perf_counter()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.discard()
            shutil.rmtree(self.directory, ignore_errors=True)
            self.writer = None

    def step(self) -> None:
        record = self.trainer.step()
        self.history.append(record)
        if self.writer is not None:
            self.writer.write(record)
