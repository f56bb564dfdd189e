"""The diagnosis on screen: each preset's verdict after a few single steps, in its colour.

The verdict line over the plots is always visible; the Lab view's panel adds
the evidence and the remedies. Steps are taken one at a time with `n`.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from engine.history import History
from engine.presets import PRESETS
from engine.records import LayerStats, StepRecord
from engine.session import TrainingSession
from tui.app import GradTUI
from tui.testing import press_step, screen_text, wait_for_frame, wait_until
from tui.widgets.diagnosis_panel import (
    MIN_INTERVAL,
    VERDICT_COLORS,
    DiagnosisPanel,
    VerdictLine,
    diagnosis_text,
    earlier_verdict,
    frame_diagnosis,
)
from tui.widgets.panel import FrameContext

EXPECTED = {
    "sigmoid-normal": "vanishing",
    "relu-normal": "vanishing",
    "relu-kaiming": "healthy",
    "clip-value": "healthy",
    "clip-norm": "healthy",
    "clip-hook": "healthy",
}


def _app(name: str) -> GradTUI:
    return GradTUI(PRESETS[name].config.replace(device="cpu"), name)


def _verdict_line(app: GradTUI) -> str:
    return app.query_one(VerdictLine).surface.cells.plain


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_preset_shows_its_verdict_after_a_few_steps(name):
    verdict = EXPECTED[name]

    async def scenario():
        app = _app(name)
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_for_frame(pilot, app)
            assert "WAITING" in _verdict_line(app)
            await press_step(pilot, app, 4)
            line = _verdict_line(app)
            assert line.lstrip().startswith(verdict.upper()), line
            rows = screen_text(app).splitlines()
            controls = next(i for i, row in enumerate(rows) if "Reset   Quit" in row)
            assert verdict.upper() in rows[controls + 1]  # right under the controls
            styles = app.query_one(VerdictLine).surface.cells.styles_of(verdict.upper())
            assert any(VERDICT_COLORS[verdict] in style for style in styles)

    asyncio.run(scenario())


def test_exploding_turns_exploding_before_its_nan_and_names_the_step():
    async def scenario():
        app = _app("exploding")
        async with app.run_test(size=(120, 40)) as pilot:
            for _ in range(40):  # the step depends on torch's shuffle order: not pinned
                await press_step(pilot, app)
                if "EXPLODING" in _verdict_line(app):
                    break
            assert "EXPLODING" in _verdict_line(app)
            assert "total gradient norm grew" in _verdict_line(app)

    asyncio.run(scenario())


def test_the_lab_view_gives_evidence_and_remedies_in_the_verdicts_colour():
    async def scenario():
        app = _app("sigmoid-normal")
        async with app.run_test(size=(120, 40)) as pilot:
            await press_step(pilot, app, 3)
            await pilot.press("d", "d")  # gradients → histograms → lab
            assert app.view == "lab"
            await wait_for_frame(pilot, app)
            panel = app.query_one(DiagnosisPanel)
            text = screen_text(app)
            for words in ("VANISHING", "h1's gradient std is", "evidence", "remedies", "Xavier"):
                assert words in text, words
            assert "batch norm (batch_norm=true)" in text
            assert panel.styles.border_top[1].rgb == (90, 160, 255)  # vanishing's blue

    asyncio.run(scenario())


def test_a_running_session_is_diagnosed_at_most_a_few_times_a_second():
    async def scenario():
        app = _app("relu-kaiming")
        async with app.run_test(size=(120, 40)) as pilot:
            line = app.query_one(VerdictLine)
            await pilot.press("space")
            assert await wait_until(pilot, lambda: app.session.status().step >= 5)
            drawn = []
            original = line.draw

            def counting(ctx, width, height):
                drawn.append(ctx.version)
                original(ctx, width, height)

            line.draw = counting
            started = time.monotonic()
            for _ in range(10):
                app.refresh_frame()  # ten frames in a burst
            # At most one diagnosis per MIN_INTERVAL of the burst, however slow the machine.
            assert len(drawn) <= 1 + int((time.monotonic() - started) / MIN_INTERVAL)
            await pilot.press("space")
            app.session.pause(wait=True)
            await wait_for_frame(pilot, app)

            def diagnosed_version():  # the history version of the line's last drawing
                return line._drawn_key[0][1]

            # Paused: the line is up to date, drawn since the burst or drawn
            # already with the last step (a slow run may take none after it).
            assert await wait_until(
                pilot, lambda: diagnosed_version() == app.session.history.version
            )

    asyncio.run(scenario())


def _record(step: int, h1_std: float) -> StepRecord:
    def stats(std):
        return LayerStats(grad_norm=std, raw_grad_norm=std, grad_std=std, act_std=0.2, act_mean=0.5)

    layers = {"h1": stats(h1_std), "h2": stats(1e-2), "o": stats(1e-2)}
    return StepRecord(step, 0, 0.7, 1.0, 1.0, layers=layers, captured=True)


def test_the_step_0_verdict_stays_in_view_when_the_verdict_changes():
    # A stalled sigmoid net reads healthy later on (level gradients); its step 0 did not.
    config = PRESETS["sigmoid-normal"].config
    first = _record(0, 1e-5)  # h1's gradient std 1e-3 of h2's: vanishing
    history = History()
    for step in range(3):
        history.append(first if step == 0 else _record(step, 1e-2))
    status = TrainingSession(config).status()
    ctx = FrameContext(history, status, config, ("h1", "h2", "o"), history.version, first)
    now = frame_diagnosis(ctx)
    assert now.verdict == "healthy"
    earlier = earlier_verdict(ctx, now)
    assert earlier is not None and earlier.verdict == "vanishing"
    text = diagnosis_text(now, earlier).plain
    assert "HEALTHY" in text and "at step 0  VANISHING  h1's gradient std is" in text
    # While the verdict is the same as step 0's, nothing is added.
    same = FrameContext(
        history, status, config, ("h1", "h2", "o"), history.version, _record(0, 1e-2)
    )
    assert earlier_verdict(same, now) is None
