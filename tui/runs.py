"""Small pieces the app keeps about runs: their names, their first record, torch warm-up."""

from __future__ import annotations

from engine.collector import import_quietly
from engine.config import RunConfig
from engine.presets import PRESETS
from engine.records import StepRecord

SPEEDS: tuple[float | None, ...] = (1, 2, 5, 10, 20, 50, 100, 200, None)  # None: unlimited


def shifted_speed(speed: float | None, notches: int) -> float | None:
    """The speed `notches` steps along SPEEDS from `speed`, kept within the scale."""
    index = min(max(SPEEDS.index(speed) + notches, 0), len(SPEEDS) - 1)
    return SPEEDS[index]


def warm_torch() -> None:
    """Import the trainer (torch, sklearn) off the UI thread so the first step is quick."""
    try:
        import_quietly("engine.trainer")  # with no collections (engine.collector)
    except Exception:  # the session reports import errors itself, in its state
        pass


def run_label(config: RunConfig, preset: str | None) -> str:
    """How the status line names a run: the preset, plus any field changed from it.

    The device is left out: the same experiment on another device is still the preset.
    """
    if preset is None or preset not in PRESETS:
        matches = [
            n for n, p in PRESETS.items() if p.config.replace(device=config.device) == config
        ]
        return matches[0] if matches else "custom config"
    base = PRESETS[preset].config
    changed = [
        f"{name}={getattr(config, name)}"
        for name in config.to_dict()
        if name != "device" and getattr(config, name) != getattr(base, name)
    ]
    return preset if not changed else f"{preset} + {', '.join(changed)}"


class FirstRecord:
    """A session's on_record hook keeping its first record (step 0) for the flow bars.

    Called in the training thread; it only assigns an attribute once, which
    the UI thread reads: no widget is touched.
    """

    def __init__(self) -> None:
        self.record: StepRecord | None = None

    def __call__(self, record: StepRecord) -> None:
        if self.record is None:
            self.record = record
