"""Running one benchmark in a fresh process of its own, its figures sent back as JSON lines.

The command runs its benchmarks in one process, and what one leaves behind
can weigh on the next. `bench_engine_ui` is the case: `bench_probe` trains
on the main thread for minutes, which leaves that thread's OpenMP worker
pool alive, and a dashboard's training thread then runs its own pool beside
it. On 2 cores the sigmoid-normal dashboard trained at 76 steps/s after a few
seconds of main-thread training, against 182 in a fresh process (no user's
dashboard has a second pool). So the command runs it apart.

Child: `python -m benchmarks.apart NAME [--deadline T] [--quick] [--threads N] [--clock C]`.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import math
import subprocess
import sys
import time

from benchmarks.common import Budget, Result, machine, set_clock

PREFIX = "@result "  # a line of the child's output that carries one Result


def run_apart(
    name: str, quick: bool, emit, budget: Budget, threads: int | None = None, clock: str = "wall"
) -> list[Result]:
    """Benchmark `name`'s figures from a child process, each emitted as it arrives.

    The child's other output is passed through. A child that fails gives
    one figure without a value, counted as missed, not an exception: the
    other benchmarks' figures stand. The child's time budget is an absolute
    deadline, so its start-up (torch's import) counts against it.
    """
    command = [sys.executable, "-m", "benchmarks.apart", name, "--clock", clock]
    seconds = budget.left()
    if math.isfinite(seconds):
        command += ["--deadline", f"{time.time() + max(seconds, 0.0):.3f}"]
    if quick:
        command.append("--quick")
    if threads:
        command += ["--threads", str(threads)]
    results = []
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as child:
        for line in child.stdout:
            if line.startswith(PREFIX):
                result = Result(**json.loads(line[len(PREFIX) :]))
                results.append(result)
                if emit is not None:
                    emit(result)
            else:
                print(line, end="", flush=True)
    if child.returncode != 0:
        # A miss, not a skip: the benchmark's targets went unmeasured.
        failed = Result(
            name, f"{name}, in a process of its own", None, "x", ok=False,
            note=f"the child process failed (exit {child.returncode})",
        )  # fmt: skip
        results.append(failed)
        if emit is not None:
            emit(failed)
    return results


def main(argv: list[str] | None = None) -> None:
    """The child: run one benchmark, print each figure as a PREFIX line of JSON."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.apart")
    parser.add_argument("name")
    parser.add_argument("--deadline", type=float, help="the budget's end, in time.time() seconds")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall")
    args = parser.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    set_clock(args.clock)
    machine()  # as the command's process: the kernel built, freed memory kept (engine.heap)
    budget = Budget(args.deadline - time.time()) if args.deadline is not None else Budget()
    module = importlib.import_module(f"benchmarks.bench_{args.name}")

    def send(result: Result) -> None:
        print(PREFIX + json.dumps(dataclasses.asdict(result)), flush=True)

    module.run(args.quick, emit=send, budget=budget)


if __name__ == "__main__":
    main()
