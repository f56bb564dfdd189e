"""The row of buttons: run/pause, step, reset, quit, the speed control, the views.

Each button runs the same app action as its key, so mouse and keyboard can
never disagree. The bar shows state; it holds none.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Button, Label

from tui.plotting import format_number


class ControlBar(Horizontal):
    """Buttons for every control key, and the current speed limit."""

    DEFAULT_CSS = """
    ControlBar { height: 1; width: 1fr; }
    ControlBar Button { margin: 0 1 0 0; min-width: 3; }
    ControlBar Label { margin: 0 1 0 0; }
    ControlBar #speed { min-width: 9; text-align: center; }
    ControlBar #run { width: 9; }
    ControlBar #view { width: 12; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        # Kept from construction, so `show` works before the children mount.
        self._run = Button("▶ Run", id="run", compact=True, action="app.toggle_run")
        self._speed = Label("unlimited", id="speed")
        self._view = Button("Histograms", id="view", compact=True, action="app.toggle_view")

    def compose(self) -> ComposeResult:
        """Buttons wired to app actions."""
        yield self._run
        yield Button("Step", id="step", compact=True, action="app.step")
        yield Button("Reset", id="reset", compact=True, action="app.reset")
        yield Button("Quit", id="quit", compact=True, action="app.quit_app")
        yield Label("speed", classes="dim")
        yield Button("−", id="slower", compact=True, action="app.slower")
        yield self._speed
        yield Button("+", id="faster", compact=True, action="app.faster")
        yield self._view
        yield Button("Config", id="panel", compact=True, action="app.toggle_sidebar")

    def show(self, running: bool, speed: float | None, next_view: str) -> None:
        """Reflect the run state, the speed limit and the view the view button opens."""
        run_label = "‖ Pause" if running else "▶ Run"
        if str(self._run.label) != run_label:
            self._run.label = run_label
        speed_text = "unlimited" if not speed else f"{format_number(speed)}/s"
        if str(self._speed.content) != speed_text:
            self._speed.update(speed_text)
        if str(self._view.label) != next_view:
            self._view.label = next_view
