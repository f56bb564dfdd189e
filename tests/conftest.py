"""Settings shared by every test; nothing here imports torch or textual."""

import atexit
import os
import shutil
import tempfile

import pytest

# The models under test are tiny: with several intra-op threads on a shared
# 2-core machine, OpenMP spin-waiting made a training step ~25x slower (24 ms
# of CPU instead of 1). Set before any test module imports torch; an explicit
# OMP_NUM_THREADS in the environment still wins.
os.environ.setdefault("OMP_NUM_THREADS", "1")

# The native statistics kernel (engine.native_stats) is built into a cache of
# this run's own, not the user's; the CLI's subprocesses inherit it.
if "GRADTUI_CACHE" not in os.environ:
    _cache = tempfile.mkdtemp(prefix="gradtui-test-cache-")
    os.environ["GRADTUI_CACHE"] = _cache
    atexit.register(shutil.rmtree, _cache, True)


@pytest.fixture(params=["c", "ctypes", "numpy"])
def stats_kernel(request, monkeypatch):
    """Run a test with the C statistics sweep (as an extension module where Python's
    headers are installed), through ctypes, then with numpy's way (engine.native_stats)."""
    import engine.native_stats as native

    if request.param == "numpy":
        monkeypatch.setattr(native, "_kernel", False)
        return request.param
    if request.param == "ctypes":
        monkeypatch.setenv("GRADTUI_NATIVE", "ctypes")
        monkeypatch.setattr(native, "_kernel", None)
    if native.sweep_kernel() is None:
        pytest.skip("no C compiler here: the native statistics sweep is not built")
    return request.param


@pytest.fixture
def make_session():
    """Sessions created by a test, all stopped when it ends (engine.session imports no torch)."""
    from sessions import WAIT

    from engine.session import TrainingSession

    sessions: list[TrainingSession] = []

    def make(config, **kwargs) -> TrainingSession:
        session = TrainingSession(config, **kwargs)
        sessions.append(session)
        return session

    yield make
    for session in sessions:
        session.stop(timeout=WAIT)
