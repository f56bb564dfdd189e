"""Which variants each set of the probe benchmark times, against which bare loop.

The sets of benchmarks/probe_plans.py by kind: the probe's variants that do
the same work every step, those that sample, the other ways of watching
(the slides' capture_gradients, TensorBoard, per-layer `.item()`), and the
Trainer's own step (benchmarks.engine_loops).
"""

from __future__ import annotations

from benchmarks.alternatives import Naive, Source, TensorBoard
from benchmarks.engine_loops import Engine, EngineBare
from benchmarks.loops import NEVER, Bare, Loop, Probe
from benchmarks.probe_plans import DEFAULTS, LARGE
from engine.config import RunConfig

TENSORBOARD = "TensorBoard add_histogram"
SOURCE = "source's way (grad.tolist())"


def variants(kind: str, loop: Loop, config: RunConfig, kept: bool = False) -> tuple[dict, object]:
    """(variants by name, the baseline variant) of one set.

    `kept`: each probe variant keeps one probe for all its blocks, as a
    user's loop does (short blocks: a probe made for each block would pay
    its first step's costs every few steps).
    """
    every = {
        "sentinels only": Probe(loop, NEVER, NEVER, kept=kept),
        "stats every step": Probe(loop, 1, NEVER, kept=kept),
    }
    sampled = {
        "everything every 10th step": Probe(loop, 10, 10, kept=kept),
        "default policy": Probe(
            loop, DEFAULTS.capture_every, DEFAULTS.activation_every, budgeted=True, kept=kept
        ),
    }
    if kind == "probe":
        # The source's way beside the probe's sets, in the same rounds: the two
        # overheads whose ratio is a target, each from 9-13 pairs, not 3.
        return {**every, **sampled, SOURCE: Source(loop, "tolist")}, Bare(loop)
    if kind == "every step":
        # The source's way in the same rounds as the probe's statistics (the
        # two overheads whose ratio is a target), but for the large MLP: at
        # ~5x its bare step it would take the set's time; there it is one of
        # the alternatives.
        source = {} if config is LARGE else {SOURCE: Source(loop, "tolist")}
        return every | source, Bare(loop)
    if kind == "sampled":
        return sampled, Bare(loop)
    if kind == "alternatives":
        out = {SOURCE: Source(loop, "tolist")} if config is LARGE else {}
        out |= {
            "source's way, clone()": Source(loop, "clone"),
            "naive per-layer .item()": Naive(loop),
        }
        if TensorBoard.available():
            out[TENSORBOARD] = TensorBoard(loop)
        if config is not LARGE:
            out["everything every step"] = Probe(loop, 1, 1)
        return out, Bare(loop)
    engine_config = config.replace(epochs=1_000_000, device="cpu")
    return (
        {
            "engine step, default policy": Engine(engine_config),
            "engine step + JSONL export": Engine(engine_config, export=True),
        },
        EngineBare(engine_config),
    )
