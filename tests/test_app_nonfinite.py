"""NaN and infinity are data: the exploding run raises a red alarm and every plot marks them."""

from __future__ import annotations

import asyncio
import re

import numpy as np

from engine.presets import PRESETS
from engine.session import PAUSED, TrainingSession
from tui.app import GradTUI
from tui.testing import screen_text, synthetic_history, wait_for_frame, wait_until


def test_exploding_raises_the_alarm_naming_the_layer_and_the_step():
    async def scenario():
        app = GradTUI(PRESETS["exploding"].config, "exploding")
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.press("space")
            # on_nonfinite=pause: the run stops itself at the first NaN.
            assert await wait_until(
                pilot,
                lambda: (
                    app.session.status().first_nonfinite is not None
                    and app.session.status().state == PAUSED
                ),
            )
            app.session.pause(wait=True)
            await wait_for_frame(pilot, app)
            nf = app.session.status().first_nonfinite
            alarm = app.query_one("#status").alarm
            assert f"at step {nf.step} in {nf.layer}" in alarm
            text = screen_text(app)
            assert f"NaN/inf at step {nf.step} in {nf.layer}" in text
            assert f"NaN@{nf.step}" in text  # marked and labelled on the plots
            assert "loss NaN" in text or "loss inf" in text

    asyncio.run(scenario())


def test_nonfinite_points_are_marked_not_dropped_in_a_long_history():
    async def scenario():
        app = GradTUI(PRESETS["sigmoid-normal"].config, "sigmoid-normal")
        async with app.run_test(size=(120, 40)) as pilot:
            history = synthetic_history(3000, layers=6, nan_at=2500)
            app.use_session(TrainingSession(app.session.config, history=history), "synthetic")
            await wait_for_frame(pilot, app)
            text = screen_text(app)
            # Decimated to the plot's width: the span holding step 2500 (~24xx or
            # ~2500, as the spans fall), for the loss and the first layer alike.
            assert re.search(r"loss NaN@~2(4\d\d|500)", text), text
            assert re.search(r"h1 NaN@~2(4\d\d|500)", text), text

    asyncio.run(scenario())


def test_frames_read_a_bounded_view_of_a_long_history(monkeypatch):
    from engine.history import History

    requested = []
    original = History.series

    def spy(self, key, max_points=400, last=None):
        series = original(self, key, max_points=max_points, last=last)
        requested.append((max_points, len(series)))
        return series

    async def scenario():
        app = GradTUI(PRESETS["sigmoid-normal"].config, "sigmoid-normal")
        async with app.run_test(size=(120, 40)) as pilot:
            history = synthetic_history(3000, layers=6)
            app.use_session(TrainingSession(app.session.config, history=history), "synthetic")
            await wait_for_frame(pilot, app)
            width = app.query_one("#loss").size.width
            monkeypatch.setattr(History, "series", spy)
            app.refresh_frame(force=True)
            assert requested
            # At most one point per braille dot column: two per cell.
            assert all(points <= 2 * width and length <= points for points, length in requested)

            assert np.isfinite(app.frame_ms)

    asyncio.run(scenario())
