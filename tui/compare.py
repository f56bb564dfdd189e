"""Compare two configs side by side: `gradtui compare A B`, or `m` in the dashboard.

Two TrainingSessions (an engine SessionPair) train the two configs with the
same seeds; one set of keys drives both (space, n, r, q, and the speed).
Each side shows its status, its diagnosis verdict, its loss, its per-layer
gradient norms and its flow bars (the heat map for RNNs), every pair of
panels on shared axes. The header names what differs between the configs.
Like the dashboard, a timer draws the frames; the sessions never touch a
widget.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Vertical
from textual.events import Resize
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Static

from engine.compare import SessionPair, describe_diff, with_same_seeds
from engine.config import RunConfig
from engine.session import FINISHED, RUNNING, STOPPED, TrainingSession
from tui.frames import PlotPacer, draw_frame, visible_panels
from tui.layers import expected_layers
from tui.plotting import format_number
from tui.runs import FirstRecord, shifted_speed, warm_torch
from tui.widgets.compare_panels import (
    PairedFlowBars,
    PairedGradNormPlot,
    PairedHeatmap,
    PairedLossPlot,
    SideStatus,
)
from tui.widgets.diagnosis_panel import VerdictLine
from tui.widgets.key_footer import KeyFooter
from tui.widgets.panel import FrameContext, HistoryPanel

Side = tuple[str, RunConfig]
SHORT = 34  # rows below which the gradient-norm pair is left out (80×24 keeps loss and flow)


def seeded_pair(left: Side, right: Side) -> tuple[Side, Side]:
    """The right config with the left one's seeds; its label says so if that changed it."""
    label, config = right
    same = with_same_seeds(left[1], config)
    if same != config:
        label = f"{label} (seeds of {left[0]})"
    return left, (label, same)


class CompareScreen(Screen):
    """Two runs, one set of controls, shared axes."""

    DEFAULT_CSS = """
    CompareScreen #compare-body { width: 1fr; height: 1fr; }
    CompareScreen #compare-header { height: auto; padding: 0 1; background: $boost; }
    CompareScreen #compare-grid {
        grid-size: 2 5; grid-columns: 1fr 1fr; grid-rows: 2 1 1fr 1fr 1fr;
        height: 1fr;
    }
    CompareScreen #compare-grid.-short { grid-size: 2 4; grid-rows: 2 1 1fr 1fr; }
    CompareScreen #compare-grid.-short PairedGradNormPlot { display: none; }
    """

    BINDINGS = [
        Binding("space", "toggle_run", "Run/Pause"),
        Binding("n", "step", "Step"),
        Binding("r", "reset", "Reset"),
        Binding("q", "close", "Quit"),
        Binding("minus", "slower", "Slower", key_display="-"),
        Binding("plus,equals_sign", "faster", "Faster", key_display="+"),
    ]

    def __init__(
        self,
        left: Side,
        right: Side,
        fps: int = 10,
        speed: float | None = None,
        on_close: Callable[[CompareScreen], None] | None = None,
    ) -> None:
        super().__init__()
        self.sides = seeded_pair(left, right)
        self.fps = max(1, int(fps))
        self.speed = speed
        self.on_close = on_close  # None: closing quits the app
        self.retired: list[TrainingSession] = []
        self.contexts: list[FrameContext] = []
        self.show_rate = True
        self._timer: Timer | None = None
        self._pacer = PlotPacer()  # both sides' plots share one budget (tui.frames)
        self.pair = self._new_pair()

    @property
    def recurrent(self) -> bool:
        """Whether either side is an RNN (then heat maps replace the flow bars)."""
        return any(config.model == "rnn" for _, config in self.sides)

    def compose(self) -> ComposeResult:
        """The header, then the two columns as rows of panel pairs."""
        # One body container: the dashboard's stylesheet lays its screens out horizontally.
        with Vertical(id="compare-body"):
            yield Static(self._header(), id="compare-header")
            with Grid(id="compare-grid"):
                for side in (0, 1):
                    yield SideStatus(id=f"status-{side}")
                last = PairedHeatmap if self.recurrent else PairedFlowBars
                for kind, name in (
                    (VerdictLine, "verdict"),
                    (PairedLossPlot, "loss"),
                    (PairedGradNormPlot, "grad-norm"),
                    (last, "timesteps" if self.recurrent else "flow"),
                ):
                    for side in (0, 1):
                        panel = kind(id=f"{name}-{side}")
                        panel.side = side
                        yield panel
        yield KeyFooter(compact=True)

    def on_mount(self) -> None:
        """Start the frame timer; draw the first frame."""
        self._fit(self.app.size.height)
        self._timer = self.set_interval(1 / self.fps, self.refresh_frame)
        self.call_after_refresh(self.refresh_frame)

    def on_resize(self, event: Resize) -> None:
        """Below SHORT rows, the gradient-norm pair gives its room to the others."""
        self._fit(event.size.height)

    def _fit(self, height: int) -> None:
        self.query_one("#compare-grid").set_class(height < SHORT, "-short")

    def on_unmount(self) -> None:
        """No frames once the screen is gone; the dashboard joins our sessions at its exit.

        (ctrl+q can end the whole app while this screen shows: its sessions must
        still be joined, or a torch import in flight could abort the process.)
        """
        if self._timer is not None:
            self._timer.stop()
        joined_later = getattr(self.app, "_retired", None)
        if isinstance(joined_later, list):
            joined_later.extend(s for s in self.sessions() if s not in joined_later)
        for session in self.sessions():
            session.stop(timeout=0)  # ask now; the owner joins

    def _header(self) -> Text:
        (a, left), (b, right) = self.sides
        text = Text(no_wrap=False)
        text.append(f"A: {a}", style="bold cyan")
        text.append("  vs  ")
        text.append(f"B: {b}", style="bold magenta")
        seeds = f"seed {left.seed}" + (f", init_seed {left.init_seed}" if left.init_seed else "")
        speed = "unlimited" if not self.speed else f"{format_number(self.speed)}/s"
        text.append(f"  ·  same seeds ({seeds})  ·  speed {speed}", style="dim")
        text.append(f"\ndiffers: {describe_diff(left, right)}", style="bold")
        return text

    # -- frames ----------------------------------------------------------------
    def _new_pair(self) -> SessionPair:
        keepers = (FirstRecord(), FirstRecord())
        self._keepers = keepers
        (_, left), (_, right) = self.sides
        return SessionPair(left, right, self.speed, lambda side, record: keepers[side](record))

    def context(self, side: int) -> FrameContext:
        """A snapshot of one side for one frame."""
        session = self.pair.sessions[side]
        status = session.status()
        history = session.history
        version = history.version
        layers = status.layer_names or tuple(history.layer_names)
        layers = layers or expected_layers(session.config)
        first = self._keepers[side].record
        return FrameContext(history, status, session.config, tuple(layers), version, first)

    def refresh_frame(self) -> None:
        """Both sides' status lines, then each side's panels that moved."""
        if not self.is_attached or self.app.screen is not self:
            return
        self.contexts = [self.context(0), self.context(1)]
        panels = visible_panels(self.query(HistoryPanel))
        running = any(ctx.status.state == RUNNING for ctx in self.contexts)
        pacer = self._pacer if running and not self.speed else None
        for side, ctx in enumerate(self.contexts):
            history = ctx.history
            label = self.sides[side][0]
            status = self.query_one(f"#status-{side}", SideStatus)
            status.show(ctx.status, ctx.config, label, history.latest, history.latest_captured)
            draw_frame([p for p in panels if getattr(p, "side", 0) == side], ctx, pacer=pacer)

    # -- controls ----------------------------------------------------------------
    def _usable(self) -> bool:
        states = [s.state for s in self.pair.status()]
        if all(state in (FINISHED, STOPPED) for state in states):
            self.notify("both runs have ended: r starts them again", severity="warning")
            return False
        return True

    def action_toggle_run(self) -> None:
        """space: start both, or pause both."""
        if self._usable():
            self.pair.toggle()
            self.refresh_frame()

    def action_step(self) -> None:
        """n: one more step on each side."""
        if self._usable():
            self.pair.step()

    def action_reset(self) -> None:
        """r: both runs again from step 0 (the old pair stops off the UI thread)."""
        self.retire(self.pair.sessions)
        self.pair = self._new_pair()
        self.refresh_frame()

    def action_slower(self) -> None:
        """-: a lower steps-per-second limit on both sides."""
        self._set_speed(shifted_speed(self.speed, -1))

    def action_faster(self) -> None:
        """+: a higher limit, up to unlimited."""
        self._set_speed(shifted_speed(self.speed, +1))

    def _set_speed(self, speed: float | None) -> None:
        self.speed = speed
        self.pair.set_rate(self.speed)
        self.query_one("#compare-header", Static).update(self._header())

    def action_close(self) -> None:
        """q: stop both runs and leave (back to the dashboard when opened from it)."""
        self.retire(self.pair.sessions)
        if self.on_close is None:
            self.app.exit()
        else:
            self.on_close(self)

    def retire(self, sessions) -> None:
        """Stop sessions without blocking the UI; they stay listed until the app joins them."""
        sessions = [s for s in sessions if s not in self.retired]
        self.retired.extend(sessions)
        for session in sessions:
            threading.Thread(target=session.stop, name="gradtui-stop", daemon=True).start()

    def sessions(self) -> list[TrainingSession]:
        """Every session this screen started."""
        return [*self.pair.sessions, *self.retired]

    @property
    def running(self) -> bool:
        """Whether either side trains now."""
        return any(s.state == RUNNING for s in self.pair.status())


class CompareBackScreen(CompareScreen):
    """The compare screen opened from the dashboard: q (or escape) goes back to it."""

    BINDINGS = [Binding("q,escape", "close", "Back")]


class CompareApp(App):
    """`gradtui compare A B`: the compare screen as an app of its own."""

    TITLE = "gradtui compare"
    ENABLE_COMMAND_PALETTE = False

    def __init__(self, left: Side, right: Side, fps: int = 10) -> None:
        super().__init__()
        self.compare = CompareScreen(left, right, fps)
        self._warm: threading.Thread | None = None

    def on_mount(self) -> None:
        """Show the compare screen; import torch off the UI thread once it is painted."""
        self.push_screen(self.compare)
        self._warm = threading.Thread(target=warm_torch, name="gradtui-warm", daemon=True)
        # After the first paint, which the import would share the interpreter's lock with.
        self.call_after_refresh(self._warm.start)

    def on_unmount(self) -> None:
        """However the app ends, stop every training thread."""
        for session in self.compare.sessions():
            session.stop(timeout=1.0)

    def run(self, *args, **kwargs):
        """Run; afterwards join the sessions and a torch import in flight (see GradTUI.run)."""
        try:
            return super().run(*args, **kwargs)
        finally:
            deadline = time.monotonic() + 60.0
            for session in self.compare.sessions():
                session.stop(timeout=max(0.0, deadline - time.monotonic()))
            if self._warm is not None and self._warm.ident is not None:  # started
                self._warm.join(max(0.0, deadline - time.monotonic()))
