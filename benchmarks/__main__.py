"""Run every benchmark of issue 4 and print each figure: `.venv/bin/python -m benchmarks`.

Options:
  --quick            fewer rounds and shorter histories (a smoke run, ~2 min)
  --only a,b         some of: check, probe, e2e, frame, engine_ui, memory, startup, gpu
  --threads N        torch intra-op threads (default: torch's own default)
  --clock cpu        time training blocks in process CPU time, not wall time
                     (with --threads 1: steady ratios on a machine others share)
  --markdown FILE    also write the figures as a Markdown table (for RESULTS.md)

The correctness check of the probe runs first; a failure stops everything.
Exit status: 0 when every figure with a target met it, 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time

from benchmarks.common import Result, machine, set_clock

ORDER = ("check", "probe", "e2e", "frame", "engine_ui", "memory", "startup", "gpu")


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", default=",".join(ORDER))
    parser.add_argument("--threads", type=int)
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall")
    parser.add_argument("--markdown", metavar="FILE")
    args = parser.parse_args(argv)
    args.only = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = set(args.only) - set(ORDER)
    if unknown:
        parser.error(f"--only: unknown benchmark(s) {', '.join(sorted(unknown))}")
    return args


def _bench(name: str):
    import importlib

    return importlib.import_module(f"benchmarks.bench_{name}")


def markdown(results: list[Result], info: dict[str, str], command: str, seconds: float) -> str:
    """The figures as RESULTS.md shows them."""
    lines = [f"Command: `{command}` ({seconds:.0f} s)", ""]
    lines += [f"- {key}: {value}" for key, value in info.items()]
    lines += [
        "",
        "| benchmark | figure | value | target | met | note |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        value = (
            "skipped"
            if r.value is None
            else (f"{r.value:.3f}x" if r.unit == "x" else f"{r.value:.1f} {r.unit}")
        )
        met = {True: "yes", False: "**no**", None: ""}[r.ok]
        lines.append(f"| {r.bench} | {r.name.strip()} | {value} | {r.target} | {met} | {r.note} |")
    return "\n".join(lines) + "\n"


def _warn_if_busy() -> None:
    """Say so when other processes share the cores: ratios get noisy, not biased."""

    try:
        load = os.getloadavg()[0]
    except OSError:
        return
    cores = os.cpu_count() or 1
    if load > 0.5 * cores:
        print(
            f"  note: load average {load:.1f} on {cores} cores: other processes compete; "
            "expect wide IQRs (--threads 1 is steadier on a busy machine)"
        )


def main(argv: list[str] | None = None) -> int:
    """Parse, run in order, print, summarize."""
    args = _parse(sys.argv[1:] if argv is None else argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    set_clock(args.clock)
    command = "python -m benchmarks " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    info = machine()
    info["clock"] = args.clock
    print(f"gradtui benchmarks: {command.strip()}")
    for key, value in info.items():
        print(f"  {key}: {value}")
    _warn_if_busy()
    # The set-up just wrote ~1 GB (torch's wheel unpacked): the kernel would
    # write it back ~30 s later, in the first timed sets. Written now (~0.4 s here).
    os.sync()
    started = time.perf_counter()
    if "check" in args.only:
        from benchmarks.check_probe import check

        problems = check()
        print(f"[check] probe statistics against torch: {'ok' if not problems else 'FAILED'}")
        for line in problems[:20]:
            print("  " + line)
        if problems:
            return 1
    results: list[Result] = []
    for name in ORDER[1:]:
        if name not in args.only:
            continue
        print(f"[{name}]", flush=True)
        t0 = time.perf_counter()
        results += _bench(name).run(args.quick, emit=lambda r: print(r.line(), flush=True))
        print(f"  ({time.perf_counter() - t0:.0f} s)", flush=True)
    seconds = time.perf_counter() - started
    missed = [r for r in results if r.ok is False]
    print(f"done in {seconds:.0f} s: {len(missed)} target(s) missed")
    for r in missed:
        print(f"  missed: {r.name.strip()} = {r.value:.3f} {r.unit} (target {r.target})")
    if args.markdown:
        info["load average at the end"] = machine()["load average (1, 5, 15 min)"]
        with open(args.markdown, "w", encoding="utf-8") as f:
            f.write(markdown(results, info, command.strip(), seconds))
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
