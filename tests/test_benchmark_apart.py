"""benchmarks.apart: a benchmark's figures from a fresh process, NaN and a failing child included."""

from __future__ import annotations

import math
import sys
import types

import benchmarks.apart as apart
from benchmarks.common import Budget, Result


def _fake_benchmark(monkeypatch, tmp_path, body: str) -> None:
    # A module benchmarks.bench_fake that the child imports (the child runs the
    # module's `run`); tmp_path is put on the child's path.
    package = tmp_path / "benchmarks_fake"
    package.mkdir()
    (tmp_path / "sitecustomize.py").write_text(
        "import benchmarks, importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('benchmarks.bench_fake', {str(package / 'fake.py')!r})\n"
        "module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)\n"
        "sys.modules['benchmarks.bench_fake'] = module\n"
    )
    (package / "fake.py").write_text(body)
    monkeypatch.setenv("PYTHONPATH", f"{tmp_path}:{':'.join(sys.path)}")


def test_the_childs_figures_come_back_as_they_were_made(monkeypatch, tmp_path):
    _fake_benchmark(monkeypatch, tmp_path, (
        "from benchmarks.common import Result\n"
        "def run(quick, emit, budget):\n"
        "    print('a plain line')\n"
        "    emit(Result('fake', 'a ratio', 0.9, 'x', '>= 0.8', True, 'IQR 0.8-1.0'))\n"
        "    emit(Result('fake', 'a nan', float('nan'), 'ms', '<= 50', False))\n"
        "    emit(Result('fake', 'skipped', None, 'x', note=f'quick={quick} left={budget.left() < 100}'))\n"
    ))  # fmt: skip
    seen = []
    results = apart.run_apart("fake", True, seen.append, Budget(60))
    assert results == seen and len(results) == 3
    assert results[0] == Result("fake", "a ratio", 0.9, "x", ">= 0.8", True, "IQR 0.8-1.0")
    assert math.isnan(results[1].value) and results[1].ok is False
    assert results[2].value is None and results[2].note == "quick=True left=True"


def test_a_child_that_fails_gives_one_skipped_figure_saying_so(monkeypatch, tmp_path):
    _fake_benchmark(
        monkeypatch, tmp_path, "def run(quick, emit, budget):\n    raise SystemExit(3)\n"
    )
    results = apart.run_apart("fake", False, None, Budget())
    assert len(results) == 1 and results[0].value is None
    assert results[0].ok is False and "exit 3" in results[0].note  # a miss: nothing measured


def test_the_command_runs_the_dashboard_benchmark_apart(monkeypatch):
    import benchmarks.__main__ as command

    called = []
    monkeypatch.setattr(command, "run_apart", lambda *args: called.append(args[0]) or [])
    monkeypatch.setattr(command, "machine", lambda: {})
    monkeypatch.setitem(sys.modules, "benchmarks.bench_engine_ui", types.ModuleType("unused"))
    assert command.main(["--only", "engine_ui", "--seconds", "0"]) == 0
    assert called == ["engine_ui"]


def test_a_failed_child_makes_the_command_fail(monkeypatch, capsys):
    import benchmarks.__main__ as command

    failed = Result("engine_ui", "engine_ui, in a process of its own", None, "x", ok=False,
                    note="the child process failed (exit 1)")  # fmt: skip
    monkeypatch.setattr(command, "run_apart", lambda *args: [failed])
    monkeypatch.setattr(command, "machine", lambda: {})
    assert command.main(["--only", "engine_ui", "--seconds", "0"]) == 1
    assert "missed: engine_ui, in a process of its own: the child process failed" in (
        capsys.readouterr().out
    )
