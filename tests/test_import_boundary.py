"""The engine never pulls in the UI, and its UI-facing modules never pull in torch.

Each check runs in a fresh interpreter, so what this test process already
imported cannot hide an import.
"""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import engine

UI_PACKAGES = ("textual", "rich", "plotext")
# What the dashboard imports before torch has loaded (DESIGN.md section 4).
TORCH_FREE = (
    "engine.config",
    "engine.presets",
    "engine.session",
    "engine.history",
    "engine.records",
)


def engine_modules() -> list[str]:
    path = Path(engine.__file__).parent
    return sorted(f"engine.{m.name}" for m in pkgutil.iter_modules([str(path)]))


def imported_after(modules: list[str]) -> set[str]:
    """Top-level package names in sys.modules after importing `modules` afresh."""
    code = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return set(json.loads(result.stdout.strip().splitlines()[-1]))


def test_engine_has_the_modules_of_the_design():
    names = set(engine_modules())
    for module in (
        "config",
        "presets",
        "data",
        "model",
        "clipping",
        "probe",
        "trainer",
        "history",
        "session",
        "records",
    ):
        assert f"engine.{module}" in names


def test_no_engine_module_imports_the_ui():
    loaded = imported_after(engine_modules())
    assert "torch" in loaded  # the modules really were imported
    assert loaded.isdisjoint(UI_PACKAGES), loaded & set(UI_PACKAGES)


@pytest.mark.parametrize("module", TORCH_FREE)
def test_ui_facing_modules_do_not_import_torch(module):
    loaded = imported_after([module])
    assert "torch" not in loaded
    assert loaded.isdisjoint(UI_PACKAGES)
