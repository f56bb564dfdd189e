"""The dashboard under stress: resizing mid-run, a device the machine lacks."""

from __future__ import annotations

import asyncio

import pytest
import torch
from textual.widgets import Select

from engine.presets import PRESETS
from engine.session import RUNNING
from tui.app import GradTUI
from tui.testing import mounted_form, screen_text, wait_for_frame, wait_until


def test_resizing_during_a_run_keeps_it_running():
    async def scenario():
        # Long enough that the run cannot finish while the terminal is resized.
        config = PRESETS["sigmoid-normal"].config.replace(epochs=1_000_000)
        app = GradTUI(config, "sigmoid-normal")
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.press("space")
            assert await wait_until(pilot, lambda: app.session.status().step >= 2)
            for size in ((80, 24), (30, 10), (200, 60), (120, 40)):
                before = app.session.status().step
                await pilot.resize_terminal(*size)
                assert await wait_until(pilot, lambda b=before: app.session.status().step > b)
                assert app.session.status().state == RUNNING
            # wait_for_frame waits for a settled history: not while it runs.
            assert await wait_until(pilot, lambda: "RUNNING" in screen_text(app))
            await pilot.press("space")

    asyncio.run(scenario())


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_cuda_without_a_gpu_is_marked_on_the_device_field_and_does_not_reset():
    async def scenario():
        app = GradTUI(PRESETS["relu-kaiming"].config, "relu-kaiming")
        async with app.run_test(size=(160, 48)) as pilot:
            await wait_for_frame(pilot, app)
            session = app.session
            form = await mounted_form(pilot, app)
            device = form.field("device")
            assert isinstance(device, Select)
            device.value = "cuda"
            box = form.query_one("#box-device")
            assert await wait_until(pilot, lambda: box.has_class("-invalid"))
            assert "no CUDA GPU" in str(form.query_one("#error-device").content)
            app.action_reset()
            await pilot.pause(0.05)
            assert app.session is session  # refused: the running session is untouched
            device.value = "auto"
            assert await wait_until(pilot, lambda: not box.has_class("-invalid"))

    asyncio.run(scenario())
