"""Issue 4 §5: time to the dashboard's first painted frame, against importing torch.

`gradtui --preset sigmoid-normal` runs in a pseudo-terminal of 120x40, as a
user starts it; the clock stops when the first frame's text (the layer
legend "h1") arrives on the terminal. The baseline is
`python -c "import torch, sklearn.datasets"` from start to exit. Both are
cold interpreters, run alternately (one warm-up each first, for the disk
cache). Target: <= 0.5x.

Run alone: `.venv/bin/python -m benchmarks.bench_startup [--quick]`.
"""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import time

from benchmarks.common import Budget, Result, median_and_spread

TARGET = "<= 0.5"
MARKER = b"h1"  # the first layer's name: in the first frame, never in escape codes
_ESCAPE = re.compile(rb"\x1b(\[[0-9;?<>=]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)|[@-Z\\-_])")


def baseline() -> float:
    """Seconds for a fresh interpreter to import torch and sklearn.datasets and exit."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import torch, sklearn.datasets"], check=True)
    return time.perf_counter() - start


def _command() -> list[str]:
    script = os.path.join(os.path.dirname(sys.executable), "gradtui")
    if os.path.exists(script):
        return [script, "--preset", "sigmoid-normal"]
    return [sys.executable, "-c", "from tui.cli import main; main()", "--preset", "sigmoid-normal"]


def first_frame(timeout: float = 60.0) -> float:
    """Seconds from spawning `gradtui` in a 120x40 terminal to its first frame's text."""
    import fcntl
    import pty
    import struct
    import termios

    command = _command()
    start = time.perf_counter()
    pid, fd = pty.fork()
    if pid == 0:  # the child: size its terminal, become gradtui
        fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
        os.environ["TERM"] = "xterm-256color"
        os.execv(command[0], command)
    seen = b""
    try:
        while time.perf_counter() - start < timeout:
            ready, _, _ = select.select([fd], [], [], 0.05)
            if not ready:
                continue
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
            if MARKER in _ESCAPE.sub(b"", seen):
                return time.perf_counter() - start
        raise RuntimeError(f"no first frame within {timeout:.0f} s: {seen[-300:]!r}")
    finally:
        os.kill(pid, signal.SIGKILL)  # a quit would wait for torch's import to finish
        os.waitpid(pid, 0)
        os.close(fd)


def run(quick: bool = False, emit=None, budget: Budget | None = None) -> list[Result]:
    """Alternate baseline and gradtui; the median of the ratios (past two, rounds that fit)."""
    try:
        import pty  # noqa: F401

        import tui.app  # noqa: F401
    except ImportError as exc:
        return [Result("startup", "first frame / import torch", None, "x", note=str(exc))]
    rounds = 2 if quick else 3
    baseline(), first_frame()  # warm the disk cache
    ratios, frames = [], []
    before = baseline()
    for _ in (budget or Budget()).rounds(rounds, 2):
        frame = first_frame()
        after = baseline()
        ratios.append(frame / ((before + after) / 2))
        frames.append(frame)
        before = after
    med, spread = median_and_spread(ratios, rounds)
    frames.sort()
    result = Result(
        "startup", "first painted frame / import torch, sklearn", med, "x", TARGET,
        med <= 0.5, f"{spread}; first frame {frames[len(frames) // 2]:.2f} s",
    )  # fmt: skip
    if emit is not None:
        emit(result)
    return [result]


def main() -> None:
    """Print the figure of this benchmark alone."""
    print("bench_startup")
    run("--quick" in sys.argv, emit=lambda r: print(r.line(), flush=True))


if __name__ == "__main__":
    main()
