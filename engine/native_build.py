"""Building the project's C code once per machine, and keeping the build.

A library is compiled with the system's C compiler on first use and kept in
the user's cache directory (GRADTUI_CACHE, else $XDG_CACHE_HOME or ~/.cache,
then `gradtui/`), named by a hash of its source, flags, CPU and whatever
else it depends on (the Python it is built for), so a home directory shared
by different machines holds one build per CPU. Every failure (no compiler,
a compiler error, one that hangs) gives None: the callers keep a slower way.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
import sysconfig
import tempfile
from pathlib import Path

# No -ffast-math: it would drop the NaN tests. -march=native is safe because
# the build is named by the CPU it was made for (_cpu_signature).
FLAGS = ["-O3", "-march=native", "-fPIC", "-shared", "-fno-math-errno"]
# A compiler that rejects -march=native (some clang on arm64) builds without it.
PLAIN_FLAGS = [flag for flag in FLAGS if flag != "-march=native"]
COMPILE_SECONDS = 20  # a build takes ~0.3 s; a compiler that hangs costs no more than this


def built_library(
    name: str, source: str, flags: list[str], depends: str = "", optional: list[str] = ()
) -> Path | None:
    """The shared library `name`-<hash>.so built from C `source`, from the cache or compiled now.

    `flags` come after FLAGS (include directories); `depends` is anything
    else the build depends on, for its name; `optional` flags are tried
    first and left out where the compiler rejects them (OpenMP). None
    without a compiler or when the build fails.
    """
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        return None
    key = hashlib.sha256(
        "\0".join([source, *FLAGS, *flags, *optional, depends, _cpu_signature()]).encode()
    ).hexdigest()
    path = _cache_dir() / f"{name}-{key[:16]}.so"
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent) as work:
        source_file = Path(work) / f"{name}.c"
        source_file.write_text(source)
        output = Path(work) / path.name
        tries = [(*FLAGS, *optional), tuple(FLAGS), (*PLAIN_FLAGS, *optional), tuple(PLAIN_FLAGS)]
        for base in dict.fromkeys(tries):  # each distinct set of flags once, in order
            done = subprocess.run(
                [compiler, *base, *flags, str(source_file), "-o", str(output), "-lm"],
                capture_output=True,
                timeout=COMPILE_SECONDS,
            )
            if done.returncode == 0:
                break
        else:
            return None
        os.replace(output, path)  # atomic: a process building beside this one is harmless
    return path


def python_headers() -> str | None:
    """The directory holding this Python's `Python.h`, or None where it is not installed."""
    include = sysconfig.get_paths().get("include")
    if include and (Path(include) / "Python.h").exists():
        return include
    return None


def python_abi() -> str:
    """What an extension module built for this Python depends on, for its build's name."""
    return f"{sysconfig.get_config_var('EXT_SUFFIX')} {platform.python_version()}"


def _cache_dir() -> Path:
    own = os.environ.get("GRADTUI_CACHE")
    if own:
        return Path(own)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "gradtui"


def _cpu_signature() -> str:
    # What -march=native depends on: the model and its instruction-set flags.
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        wanted = [x for x in lines if x.startswith(("model name", "flags", "Features"))]
        return "\n".join(dict.fromkeys(wanted))
    except OSError:
        return f"{platform.machine()} {platform.processor()} {platform.platform()}"
