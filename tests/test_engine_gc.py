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


def test_what_the_first_run_imports_on_first_use_is_frozen_too(monkeypatch):
    # The regression data set's sklearn and the first optimizer's torch modules
    # are imported before the freeze: their objects are as long-lived as torch's.
    import importlib

    import torch

    events = []
    real_import, real_sgd = importlib.import_module, torch.optim.SGD
    monkeypatch.setattr(trainer_module, "_long_lived_frozen", False)
    monkeypatch.setattr(gc, "freeze", lambda: events.append("freeze"))
    monkeypatch.setattr(
        importlib, "import_module", lambda name, *a: events.append(name) or real_import(name, *a)
    )
    monkeypatch.setattr(
        torch.optim, "SGD", lambda *a, **k: events.append("SGD") or real_sgd(*a, **k)
    )
    Trainer(RunConfig(dataset="regression", model="shallow", epochs=1))
    before = events[: events.index("freeze")]  # (sklearn imports its own modules too)
    assert before[0] == "sklearn.datasets" and "SGD" in before


def test_imports_run_with_the_collector_paused_and_restored():
    import threading

    from engine.collector import collector_paused, import_quietly

    assert gc.isenabled()
    with collector_paused():
        assert not gc.isenabled()
        inner_done = threading.Event()

        def other_thread() -> None:  # an overlapping import elsewhere ends first
            with collector_paused():
                assert not gc.isenabled()
            inner_done.set()

        threading.Thread(target=other_thread).start()
        assert inner_done.wait(5)
        assert not gc.isenabled()  # still inside the first
    assert gc.isenabled()
    try:
        with collector_paused():
            raise KeyError("an import failed")
    except KeyError:
        pass
    assert gc.isenabled()
    gc.disable()  # a program that turned it off keeps it off
    try:
        with collector_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
    assert import_quietly("json").dumps([1]) == "[1]"
    assert gc.isenabled()
