"""Screenshots of the dashboard at 120×40 after a fixed number of single steps.

Deterministic by construction: CPU, the presets' seeds, steps taken one at a
time with `n` (each waited for), the measured steps/s hidden, and every
frame drawn from the history's final version before the screenshot.
Refresh with `pytest tests/test_snapshots.py --snapshot-update` and look at
the report before accepting.
"""

from __future__ import annotations

from engine.presets import PRESETS
from tui.app import GradTUI
from tui.testing import press_step, wait_for_frame

SIZE = (120, 40)


def _stepped(name: str, steps: int, keys: tuple[str, ...] = ()):
    app = GradTUI(PRESETS[name].config.replace(device="cpu"), name)
    app.show_rate = False  # the one number that depends on the machine's speed

    async def run_before(pilot) -> None:
        await wait_for_frame(pilot, app)
        await press_step(pilot, app, steps)
        app.session.pause(wait=True)
        if keys:
            await pilot.press(*keys)
            await pilot.pause()
            app.refresh_frame()
        await wait_for_frame(pilot, app)

    return app, run_before


def test_sigmoid_normal_after_12_steps(snap_compare):
    """Vanishing: flow bars rise from h1 to o; h1's norm ~1e-4 of o's."""
    app, before = _stepped("sigmoid-normal", 12)
    assert snap_compare(app, terminal_size=SIZE, run_before=before)


def test_exploding_after_12_steps(snap_compare):
    """Exploding: the loss and fc1's gradient climb to NaN; the red alarm names step and layer."""
    app, before = _stepped("exploding", 12)
    assert snap_compare(app, terminal_size=SIZE, run_before=before)


def test_sigmoid_normal_distributions_after_11_steps(snap_compare):
    """The histograms of step 10: sigmoid activations piled near 0.5, h1's gradients narrowest."""
    app, before = _stepped("sigmoid-normal", 11, keys=("d",))
    assert snap_compare(app, terminal_size=SIZE, run_before=before)
