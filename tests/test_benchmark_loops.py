"""The benchmarks' probe variant (benchmarks/loops.py): a probe made per block, or one kept."""

from __future__ import annotations

import pytest

from benchmarks.loops import NEVER, Loop, Probe
from benchmarks.probe_plans import REGRESSION


def _blocks(*variants, steps: int = 2) -> None:
    for variant in variants:
        variant.start()
        for _ in range(steps):
            variant.step()
        variant.stop()


def test_a_kept_probe_serves_every_block_and_measures_its_own_steps():
    loop = Loop(REGRESSION)
    kept, fresh = Probe(loop, 1, NEVER, kept=True), Probe(loop, 1, NEVER)
    kept.start()
    probe = kept.probe
    kept.stop()
    _blocks(kept, fresh, kept)  # another probe's blocks between its own
    assert kept.probe is probe and fresh.probe is not probe
    assert kept.step_index == 4 and kept.replays == 0  # no CUDA graphs on the CPU
    # A step of its own after the other's: its record holds this step's gradients.
    kept.start()
    probe.begin_step(kept.step_index)
    loss = loop.backward(kept.flat)
    probe.after_backward(loss)
    norms = [p.grad.norm().item() for p in probe.layer_params]
    loop.optimizer.step()
    record = probe.end_step(loss, 0)
    kept.stop()
    assert [record.layers[n].raw_grad_norm for n in probe.layer_names] == pytest.approx(norms)
    assert record.loss == pytest.approx(loss.item())


def test_a_probe_made_per_block_is_closed_after_it():
    loop = Loop(REGRESSION)
    fresh = Probe(loop, 1, NEVER)
    _blocks(fresh)
    first = fresh.probe
    _blocks(fresh)
    assert fresh.probe is not first and fresh.step_index == 4


def test_the_engine_variant_exports_a_set_to_one_file():
    # The writer formats 64 records at a time: a file per 10-step block would
    # never format one inside a timed block, so one file serves every block.
    import os

    from benchmarks.engine_loops import Engine

    engine = Engine(REGRESSION.replace(epochs=1_000, device="cpu"), export=True)
    _blocks(engine, steps=10)
    writer, directory = engine.writer, engine.directory
    for _ in range(6):
        _blocks(engine, steps=10)
    assert engine.writer is writer and writer.count == 70
    assert len(writer._kept) == 70 - 64  # a batch was formatted within the blocks
    engine.close()
    assert engine.writer is None and not os.path.exists(directory)
