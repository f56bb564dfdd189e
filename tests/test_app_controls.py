"""Keys and buttons: space runs and pauses, n steps once, r resets, q quits cleanly."""

from __future__ import annotations

import asyncio

from engine.presets import PRESETS
from engine.session import PAUSED, RUNNING
from tui.app import GradTUI
from tui.testing import mounted_form, press_step, screen_text, wait_for_frame, wait_until


def _app(name: str = "sigmoid-normal") -> GradTUI:
    return GradTUI(PRESETS[name].config, name)


def test_space_starts_and_space_again_pauses():
    async def scenario():
        app = _app()
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.press("space")
            assert await wait_until(pilot, lambda: app.session.status().step >= 2)
            assert app.session.status().state == RUNNING
            await pilot.press("space")
            assert await wait_until(pilot, lambda: app.session.status().state == PAUSED)
            app.session.pause(wait=True)  # a step already in flight may still land
            stopped_at = app.session.status().step
            for _ in range(10):
                await pilot.pause(0.05)
            assert app.session.status().step == stopped_at
            await wait_for_frame(pilot, app)
            first = screen_text(app).splitlines()[0]
            assert "PAUSED" in first and f"trained {stopped_at}/2000 steps" in first

    asyncio.run(scenario())


def test_n_advances_exactly_one_step():
    async def scenario():
        app = _app()
        async with app.run_test(size=(120, 40)) as pilot:
            await press_step(pilot, app)
            for _ in range(10):
                await pilot.pause(0.05)
            assert app.session.status().step == 1
            assert app.session.history.count == 1
            assert "trained 1/2000 steps" in screen_text(app)
            await press_step(pilot, app)
            assert app.session.status().step == 2

    asyncio.run(scenario())


def test_buttons_do_what_the_keys_do():
    async def scenario():
        app = _app()
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_for_frame(pilot, app)  # laid out, so the clicks land
            await pilot.click("#step")
            assert await wait_until(pilot, lambda: app.session.status().step == 1)
            await pilot.click("#slower")
            assert app.speed == 200 and app.session.max_steps_per_second == 200
            await pilot.click("#faster")
            assert app.speed is None and app.session.max_steps_per_second is None
            await pilot.press("minus", "minus", "minus")
            assert app.session.max_steps_per_second == 50
            await wait_for_frame(pilot, app)
            assert "50/s" in screen_text(app)

    asyncio.run(scenario())


def test_choosing_another_preset_and_r_resets_the_counter_and_the_plots():
    async def scenario():
        app = _app()
        async with app.run_test(size=(120, 40)) as pilot:
            await press_step(pilot, app, 2)
            old = app.session
            presets = app.query_one("#presets")
            presets.focus()
            presets.highlighted = list(PRESETS).index("exploding")
            await pilot.press("enter")
            form = await mounted_form(pilot, app)
            assert await wait_until(pilot, lambda: form.config == PRESETS["exploding"].config)
            assert app.session is old  # choosing only loads the form
            assert "r resets with: exploding" in screen_text(app)
            await pilot.press("r")
            await wait_for_frame(pilot, app)
            assert app.session is not old
            assert app.session.config == PRESETS["exploding"].config
            assert app.session.status().step == 0 and app.session.history.count == 0
            text = screen_text(app)
            assert "exploding" in text.splitlines()[0]
            assert "trained 0 steps" in text
            assert "━fc1" in text and "━h1" not in text  # the plots were cleared
            assert text.count("no steps yet") == 3
            assert await wait_until(pilot, lambda: not old.alive)
            await press_step(pilot, app)
            assert "trained 1/320 steps" in screen_text(app)

    asyncio.run(scenario())


def test_an_invalid_lr_is_marked_on_its_field_and_does_not_reset():
    async def scenario():
        app = _app()
        async with app.run_test(size=(120, 40)) as pilot:
            await press_step(pilot, app)
            session = app.session
            form = await mounted_form(pilot, app)
            lr = form.field("lr")
            lr.focus()
            lr.value = ""
            await pilot.press("minus", "1")
            box = form.query_one("#box-lr")
            assert await wait_until(pilot, lambda: box.has_class("-invalid"))
            assert "must be greater than 0" in str(form.query_one("#error-lr").content)
            await pilot.press("escape", "r")
            await pilot.pause()
            assert app.session is session and session.status().step == 1
            text = screen_text(app)
            assert "must be greater than 0" in text and "reset refused" in text
            # Text that is not a number gets the parser's reason; fixing it clears the mark.
            lr.value = "fast"
            assert await wait_until(pilot, lambda: "expected a number" in form.errors.get("lr", ""))
            lr.value = "0.1"
            assert await wait_until(pilot, lambda: not box.has_class("-invalid"))
            await pilot.press("escape", "r")
            assert await wait_until(pilot, lambda: app.session is not session)
            assert app.session.config.lr == 0.1

    asyncio.run(scenario())


def test_q_during_a_run_exits_with_the_thread_joined():
    async def scenario():
        app = _app()
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.press("space")
            assert await wait_until(pilot, lambda: app.session.status().step >= 1)
            assert app.session.alive
            await pilot.press("q")
        return app

    app = asyncio.run(scenario())
    assert not app.session.alive
    assert app.session.status().state == "stopped"


def test_an_exception_in_the_training_thread_is_shown_and_reset_recovers(monkeypatch):
    import engine.trainer

    class Broken:
        def __init__(self, config, **options):
            raise RuntimeError("the model could not be built")

    async def scenario():
        app = _app()
        async with app.run_test(size=(120, 40)) as pilot:
            monkeypatch.setattr(engine.trainer, "Trainer", Broken)
            await pilot.press("space")
            assert await wait_until(pilot, lambda: app.session.status().state == "error")
            await wait_for_frame(pilot, app)
            text = screen_text(app)
            assert "training failed: RuntimeError: the model could not be built" in text
            monkeypatch.undo()
            await pilot.press("r")
            await press_step(pilot, app)
            assert app.session.status().state == PAUSED
            assert "training failed" not in screen_text(app)

    asyncio.run(scenario())
