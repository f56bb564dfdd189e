"""Where a probed GPU step's time goes, phase by phase, against the bare step.

For the block model and the large MLP on CUDA: the median host time of each
phase of a step (forward and backward, the probe's `after_backward`, the
optimizer, `end_step`, which holds the step's one read and so waits for the
GPU), for the bare loop and for the probe at each capture level, steps
alternated one by one (`--phases`); torch.profiler's busiest host-side
operators over a few sentinel steps (`--operators`); and by default, the
ways of taking the sentinels (the loss and the total gradient norm, read in
one copy) against the bare step, in interleaved blocks. Skipped where torch
sees no CUDA device.

`--engine` cProfiles the Engine variant (Trainer.step and History.append)
against the bare loop drawing the same batches.

Run alone: `python -m benchmarks.profile_gpu [--phases] [--operators] [--engine]`.
"""

from __future__ import annotations

import math
import statistics
import sys
import time

import torch

from benchmarks.loops import Loop
from benchmarks.probe_plans import PLANS
from engine.clipping import ClipStrategy
from engine.flat_grads import FlatGradients
from engine.probe import GradientProbe

PHASES = ("forward+backward", "after_backward", "optimizer", "end_step", "whole step")
LEVELS = {"sentinels": (False, False), "stats": (True, False), "everything": (True, True)}


def _probed(loop: Loop, probe: GradientProbe, flat, step: int, level: str) -> list[float]:
    capture, acts = LEVELS[level]
    clock = time.perf_counter
    t0 = clock()
    probe.begin_step(step, activations=acts, capture=capture)
    loss = loop.backward(flat)
    t1 = clock()
    probe.after_backward(loss)
    t2 = clock()
    loop.optimizer.step()
    t3 = clock()
    probe.end_step(loss, 0)
    t4 = clock()
    return [t1 - t0, t2 - t1, t3 - t2, t4 - t3, t4 - t0]


def _bare(loop: Loop) -> list[float]:
    clock = time.perf_counter
    t0 = clock()
    loss = loop.backward()
    t1 = clock()
    t2 = clock()
    loop.optimizer.step()
    t3 = clock()
    loss.item()
    t4 = clock()
    return [t1 - t0, t2 - t1, t3 - t2, t4 - t3, t4 - t0]


def phases(model: str, steps: int = 600) -> dict[str, list[float]]:
    """Median microseconds of each phase, per variant (bare and the probe's levels)."""
    loop = Loop(PLANS[model][0].replace(device="cuda"))
    loop.to("cuda")
    probe = GradientProbe(loop.model, clip=ClipStrategy(), lr=loop.config.lr).__enter__()
    params = [p for p in loop.model.parameters() if p.requires_grad]
    flat = FlatGradients(params) if FlatGradients.suits(params) else None
    probe.flat = flat
    names = ["bare", *LEVELS]
    times: dict[str, list[list[float]]] = {name: [] for name in names}
    try:
        for i in range(steps):
            name = names[i % len(names)]
            if name == "bare":
                if flat is not None:
                    for p in params:  # autograd's own gradients, as the bare loop has them
                        p.grad = None
                times[name].append(_bare(loop))
            else:
                times[name].append(_probed(loop, probe, flat, i, name))
    finally:
        probe.close()
    warm = len(names) * 20
    return {
        name: [
            1e6 * statistics.median(col) for col in zip(*rows[warm // len(names) :], strict=True)
        ]
        for name, rows in times.items()
    }


def top_operators(model: str, steps: int = 30, rows: int = 12) -> str:
    """torch.profiler's table of the host time of `steps` sentinel steps."""
    from torch.profiler import ProfilerActivity, profile

    loop = Loop(PLANS[model][0].replace(device="cuda"))
    loop.to("cuda")
    params = [p for p in loop.model.parameters() if p.requires_grad]
    flat = FlatGradients(params) if FlatGradients.suits(params) else None
    with GradientProbe(loop.model, lr=loop.config.lr) as probe:
        probe.flat = flat
        for i in range(10):
            _probed(loop, probe, flat, i, "sentinels")
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            for i in range(steps):
                _probed(loop, probe, flat, 10 + i, "sentinels")
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows)


def engine_profile(model: str, steps: int = 1000, rows: int = 18, device: str = "cuda") -> str:
    """cProfile's busiest functions over `steps` of the Engine variant (Trainer.step and
    History.append, what `gradtui run` does a step) and of the bare loop drawing the same
    batches, after a settle: where the Trainer's step spends host time past the bare one's."""
    import cProfile
    import io
    import pstats

    from benchmarks.bench_probe import SETTLE_SECONDS
    from benchmarks.engine_loops import Engine, EngineBare

    config = PLANS[model][0].replace(device=device)
    out = io.StringIO()
    for name, variant in (("engine", Engine(config)), ("bare", EngineBare(config))):
        variant.settle(SETTLE_SECONDS)
        variant.start()
        try:
            profiler = cProfile.Profile()
            start = time.perf_counter()
            profiler.enable()
            for _ in range(steps):
                variant.step()
            profiler.disable()
            elapsed = time.perf_counter() - start
        finally:
            variant.stop()
        out.write(f"\n{name}: {1e6 * elapsed / steps:.0f} us a step under cProfile\n")
        stats = pstats.Stats(profiler, stream=out).sort_stats("tottime")
        stats.print_stats(rows)
    return out.getvalue()


def _strategy_runner(loop: Loop, name: str, steps: int):
    """A block of `steps` steps taking the sentinels one way (or none: "bare")."""
    from benchmarks.common import now
    from engine.recording import l2_total
    from engine.sentinels import _flatten, loss_and_norm

    params = [p for p in loop.model.parameters() if p.requires_grad]
    numel = sum(p.numel() for p in params)

    def run() -> float:
        start = now()
        for _ in range(steps):
            loss = loop.backward()
            if name == "bare":
                loop.optimizer.step()
                loss.item()
                continue
            grads = [p.grad for p in params]
            if name == LOSS_SLOT:  # engine.sentinels.loss_and_norm
                packed = loss_and_norm(grads, loss.detach(), numel)
                loop.optimizer.step()
                values = packed.tolist()
                l2_total(values[1:])
                continue
            if name == "foreach norms, summed on the host":
                parts = list(torch._foreach_norm(grads))
            elif name == "cat, one norm":
                parts = [torch.linalg.vector_norm(torch.cat([g.reshape(-1) for g in grads]))]
            else:  # the packed sentinels' way: torch._C._nn.flatten_dense_tensors
                parts = [torch.linalg.vector_norm(_flatten(grads))]
            loop.optimizer.step()
            values = torch.stack([loss.detach().reshape(()), *parts]).tolist()
            l2_total(values[1:])
        elapsed = now() - start
        return elapsed

    return run


LOSS_SLOT = "flatten with the loss, norm in its slot"
STRATEGIES = (
    "foreach norms, summed on the host",
    "cat, one norm",
    "flatten in one call, one norm",
    LOSS_SLOT,
)


def _device_reductions(grads: list, layers: list[int], weights: list) -> torch.Tensor:
    # A statistics step's reductions on the device path, as the probe queues
    # them (engine.stats.queue_device_moments): every gradient's norm, each
    # layer's abs max, mean and std, each weight's norm; stacked for one read.
    parts = list(torch._foreach_norm(grads))
    layer_grads = [grads[i] for i in layers]
    parts += torch._foreach_norm(layer_grads, math.inf)
    for g in layer_grads:
        std, mean = torch.std_mean(g)
        parts += [mean, std]
    parts += torch._foreach_norm(weights)
    return torch.stack(parts)


def _stats_runner(loop: Loop, steps: int, graphed: bool):
    """A block of statistics steps: the reductions issued op by op, or replayed as one graph.

    The graph reads a static buffer that one `torch.cat(out=)` fills from
    autograd's gradients (their addresses change every step); the weights
    stay where they are.
    """
    from benchmarks.common import now

    params = [p for p in loop.model.parameters() if p.requires_grad]
    layers = [i for i, p in enumerate(params) if p.dim() >= 2]
    weights = [params[i] for i in layers]
    if graphed:
        # Detached, as engine.graphed_stats captures: reductions over weights
        # that require grad would make their gradient accumulators on the
        # side stream (a stream-mismatch warning at every backward after).
        weights = [w.detach() for w in weights]
        static = torch.zeros(sum(p.numel() for p in params), device=params[0].device)
        views = list(static.split([p.numel() for p in params]))
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm-up off the capture, as torch.cuda.graphs asks
            for _ in range(3):
                _device_reductions(views, layers, weights)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            captured = _device_reductions(views, layers, weights)

    def run() -> float:
        start = now()
        for _ in range(steps):
            loss = loop.backward()
            if graphed:
                torch.cat([p.grad.reshape(-1) for p in params], out=static)
                graph.replay()
                values = captured
            else:
                values = _device_reductions([p.grad for p in params], layers, weights)
            loop.optimizer.step()
            torch.cat([loss.detach().reshape(1), values]).tolist()
        elapsed = now() - start
        for p in params:
            p.grad = None
        return elapsed

    return run


def _engine_graph_runner(loop: Loop, steps: int):
    """A block of statistics steps through engine.graphed_stats: replayed where the tensors allow."""
    from benchmarks.common import now
    from engine.graphed_stats import GraphedStatistics

    params = [p for p in loop.model.parameters() if p.requires_grad]
    layers = [i for i, p in enumerate(params) if p.dim() >= 2]
    names = [str(i) for i in layers]
    graphed = GraphedStatistics(params, layers, [params[i] for i in layers], names)

    def run() -> float:
        start = now()
        for _ in range(steps):
            loss = loop.backward()
            vector = graphed.measure([p.grad for p in params], loss.detach())
            loop.optimizer.step()
            vector.tolist()
        elapsed = now() - start
        for p in params:
            p.grad = None
        return elapsed

    return run


def strategies(model: str, steps: int = 150, rounds: int = 9) -> dict[str, float]:
    """Per way of taking the sentinels or the statistics, the median ratio to bare blocks."""
    from benchmarks.common import interleaved

    loop = Loop(PLANS[model][0].replace(device="cuda"))
    loop.to("cuda")
    bare = _strategy_runner(loop, "bare", steps)
    runners = {name: _strategy_runner(loop, name, steps) for name in STRATEGIES}
    runners["stats, op by op"] = _stats_runner(loop, steps, graphed=False)
    try:
        runners["stats, one CUDA graph"] = _stats_runner(loop, steps, graphed=True)
        runners["stats, the engine's graph"] = _engine_graph_runner(loop, steps)
    except Exception as error:  # a prototype: report why, time the rest
        print(f"  CUDA graph not captured: {type(error).__name__}: {error}")
    ratios = interleaved(bare, runners, rounds)
    return {name: statistics.median(values) for name, values in ratios.items()}


def main() -> None:
    """Print the tables for both models."""
    if not torch.cuda.is_available():
        print("profile_gpu: no CUDA device: skipped")
        return
    for model in ("block", "large MLP"):
        print(f"\n{model}: sentinels (loss + total gradient norm) or statistics, one read / bare")
        for name, ratio in strategies(model).items():
            print(f"  {name:<36} {ratio:.3f}x")
    if "--phases" in sys.argv:
        for model in ("block", "large MLP"):
            print(f"\n{model}: median host microseconds per phase, steps alternated")
            print(f"  {'variant':<12}" + "".join(f"{p:>18}" for p in PHASES))
            for name, values in phases(model).items():
                print(f"  {name:<12}" + "".join(f"{v:>18.1f}" for v in values))
    if "--engine" in sys.argv:
        for model in ("block", "large MLP"):
            print(
                f"\n{model}: the Engine's step (Trainer + History) and the bare loop's, cProfiled"
            )
            print(engine_profile(model))
    if "--operators" in sys.argv:
        for model in ("block", "large MLP"):
            print(f"\n{model}: sentinel steps, busiest host-side operators")
            print(top_operators(model))


if __name__ == "__main__":
    main()
