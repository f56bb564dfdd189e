"""The Trainer keeps the cyclic garbage collector off the process's long-lived objects."""

from __future__ import annotations

import gc

import engine.trainer as trainer_module
from engine.config import RunConfig
from engine.trainer import Trainer


def test_first_trainer_freezes_what_was_alive_and_only_once(monkeypatch):
    calls = []
    monkeypatch.setattr(trainer_module, "_long_lived_frozen", False)
    monkeypatch.setattr(gc, "freeze", lambda: calls.append(gc.get_count()))
    Trainer(RunConfig(epochs=1))
    Trainer(RunConfig(epochs=1))
    assert len(calls) == 1  # a second run's objects (and the first's) stay collectable


def test_a_finished_trainers_model_is_still_collected():
    import weakref

    trainer = Trainer(RunConfig(epochs=1))  # the process's freeze has happened by now
    trainer.step()
    trainer.close()
    model = weakref.ref(trainer.model)
    del trainer
    gc.collect()
    assert model() is None
