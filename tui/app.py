"""The dashboard: a TrainingSession in the background, its history drawn on a timer.

Data flows one way: the session thread appends records to a bounded History;
a timer here (at most `fps` times a second) reads a status snapshot and
hands every visible HistoryPanel a FrameContext; each panel redraws only if
its part of the history moved. Nothing here runs in the training thread and
the session never calls back. Controls are plain method calls on the session.
Torch is never imported on this thread: the session imports it in its own,
and a warm-up thread starts that import once the first frame is painted.
"""

from __future__ import annotations

import sys
import threading
import time
import weakref

from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, Vertical
from textual.events import Resize
from textual.timer import Timer
from textual.widgets import ContentSwitcher, Static

from engine.config import RunConfig
from engine.presets import PRESETS
from engine.session import ERROR, FINISHED, STOPPED, TrainingSession
from tui.frame_loop import FrameLoop
from tui.frames import PlotPacer
from tui.lab_actions import LabActions
from tui.messages import FormChanged, PresetChosen
from tui.record_spool import RecordHooks, RecordSpool
from tui.runs import FirstRecord, run_label, shifted_speed, warm_torch
from tui.widgets.control_bar import ControlBar
from tui.widgets.diagnosis_panel import VerdictLine
from tui.widgets.flow_bars import FlowBars
from tui.widgets.grad_mean_plot import GradMeanPlot
from tui.widgets.grad_norm_plot import GradNormPlot
from tui.widgets.histogram_panel import HistogramPanel
from tui.widgets.key_footer import KeyFooter
from tui.widgets.lab_view import LabView
from tui.widgets.loss_plot import LossPlot
from tui.widgets.sidebar import Sidebar
from tui.widgets.status_bar import StatusBar
from tui.widgets.timestep_heatmap import TimestepHeatmap

SIDEBAR_MIN_WIDTH = 100  # below this the side panel starts hidden (c shows it)
MIN_SIZE = (40, 12)  # below this only a "terminal too small" message is shown


class GradTUI(FrameLoop, LabActions, App):
    """gradtui's dashboard; the CLI and the tests build it the same way."""

    CSS_PATH = "gradtui.tcss"
    TITLE = "gradtui"
    ENABLE_COMMAND_PALETTE = False
    BINDINGS = [
        Binding("space", "toggle_run", "Run/Pause"),
        Binding("n", "step", "Step"),
        Binding("r", "reset", "Reset"),
        Binding("q", "quit_app", "Quit"),
        Binding("minus", "slower", "Slower", key_display="-"),
        Binding("plus,equals_sign", "faster", "Faster", key_display="+"),
        Binding("d", "toggle_view", "Views"),
        Binding("c", "toggle_sidebar", "Config"),
        Binding("m", "compare", "Compare"),
        Binding("s", "save_config", "Save cfg"),
        Binding("l", "load_config", "Load cfg"),
        Binding("e", "export", "Export"),
        Binding("p", "screenshot", "SVG"),
    ]

    def __init__(self, config: RunConfig, preset: str | None = None, fps: int = 10) -> None:
        super().__init__()
        self.fps = max(1, int(fps))
        self.speed: float | None = None  # the session's max_steps_per_second
        self.show_rate = True  # snapshot tests hide what depends on speed (steps/s, periods)
        self.view = "gradients"
        self.form_preset = preset  # the preset last loaded into the form
        self._retired: list[TrainingSession] = []
        self._first_records: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self.spools: dict = {}  # session -> RecordSpool (lab_actions: the export's records)
        self.session = self._new_session(config)
        self.session_label = run_label(config, preset)
        self.frame_ms = 0.0  # cost of the last frame's drawing, for benchmarks
        self._sidebar_choice: bool | None = None  # None: by terminal width
        self._timer: Timer | None = None
        self._warm: threading.Thread | None = None
        self._switch_interval: float | None = None  # the interpreter's, once changed
        self._settled: tuple | None = None  # (history, version) once every panel drew it
        self._pacer = PlotPacer()  # spaces plot redraws while a run trains unthrottled

    # -- layout ----------------------------------------------------------------
    def compose(self) -> ComposeResult:
        """Side panel, then status, controls and the switchable views; the footer."""
        # The screen's size classes before any widget mounts: a class set on the
        # screen restyles every widget on it, and set at mount it cost a second
        # styling of the whole dashboard before the first frame (1.76 -> 1.45 s
        # to the first frame on 2 cores, alternating six rounds).
        self._screen_classes(self.size.width, self.size.height)
        yield Sidebar(self.session.config, self.form_preset, id="sidebar")
        with Vertical(id="main"):
            yield StatusBar(id="status")
            yield ControlBar(id="controls")
            yield VerdictLine(id="verdict")
            with ContentSwitcher(initial="gradients", id="views") as self._views:
                with Grid(id="gradients"):
                    yield LossPlot(id="loss")
                    yield GradMeanPlot(id="grad-mean")
                    yield TimestepHeatmap(id="timesteps")  # in its place for the rnn
                    yield GradNormPlot(id="grad-norm")
                    yield FlowBars(id="flow")
                with Horizontal(id="distributions"):
                    for kind in ("weight", "act", "grad"):
                        yield HistogramPanel(kind, id=f"hist-{kind}")
                yield LabView(id="lab")
        yield Static(
            f"terminal too small: gradtui needs at least {MIN_SIZE[0]}×{MIN_SIZE[1]}",
            id="too-small",
        )
        yield KeyFooter(compact=True)

    def on_mount(self) -> None:
        """Start the frame timer and the torch warm-up; paint the first frame."""
        self._status_bar = self.query_one(StatusBar)
        self._control_bar = self.query_one(ControlBar)
        self._main = self.query_one("#main", Vertical)
        self.gradient_grid = self.query_one("#gradients", Grid)
        self._apply_size(self.size.width, self.size.height)
        self._timer = self.set_interval(1 / self.fps, self.frame_tick)
        self._warm = threading.Thread(target=warm_torch, name="gradtui-warm", daemon=True)
        self.query_one("#presets").focus()
        self.call_after_refresh(self._first_frame)

    def _first_frame(self) -> None:
        """The first frame, then torch's import in the background, once it is painted.

        The import holds the interpreter's lock for seconds; begun at mount, it
        shared it with the first layout and paint, which came ~0.4 s later for
        it (first frame 1.91 -> 1.50 s on 2 cores; a step trained ~0.3 s later
        when space is pressed at once, within the spread: both are the same
        work in another order).
        """
        self.refresh_frame()
        if self._warm is not None and self._warm.ident is None:
            self.call_after_refresh(self._warm.start)

    def on_resize(self, event: Resize) -> None:
        """Show or hide the side panel and the too-small message for the new size."""
        self._apply_size(event.size.width, event.size.height)

    def _screen_classes(self, width: int, height: int) -> None:
        screen = self.screen
        screen.set_class(width < MIN_SIZE[0] or height < MIN_SIZE[1], "-too-small")
        show = self._sidebar_choice
        if show is None:
            show = width >= SIDEBAR_MIN_WIDTH
        screen.set_class(show, "-sidebar")

    def _apply_size(self, width: int, height: int) -> None:
        self._screen_classes(width, height)
        sidebar = self.query_one(Sidebar)
        sidebar.styles.width = (
            42 if width >= 180 else 38 if width >= 140 else 36 if width >= 100 else 32
        )

    # -- actions ---------------------------------------------------------------
    def action_toggle_run(self) -> None:
        """Space: start or pause the training."""
        state = self.session.status().state
        if state in (FINISHED, STOPPED, ERROR):
            self.notify(f"the run is {state}: r starts it again", severity="warning")
            return
        self.session.toggle()
        self.refresh_frame()

    def action_step(self) -> None:
        """n: train exactly one more step."""
        state = self.session.status().state
        if state in (FINISHED, STOPPED, ERROR):
            self.notify(f"the run is {state}: r starts it again", severity="warning")
            return
        self.session.step()

    def action_reset(self) -> None:
        """r: a fresh session with the form's config, unless the form is invalid."""
        form = self.query_one(Sidebar).form
        config = form.validate()
        if config is None:
            reasons = "; ".join(f"{k}: {v}" for k, v in form.errors.items())
            self.notify(f"reset refused, the form is invalid: {reasons}", severity="error")
            self.bell()
            return
        self.use_session(self._new_session(config), run_label(config, self.form_preset))

    def use_session(self, session: TrainingSession, label: str) -> None:
        """Show `session` from now on; the old one is stopped off the UI thread.

        Reset uses it; so can a benchmark that hands in a prepared history.
        """
        old = self.session
        self.release_training()
        self.session = session
        self.session_label = label
        session.max_steps_per_second = self.speed
        if old is not session:
            self._retire(old)
        self._update_form_notice()
        self.refresh_frame(force=True)

    def _new_session(self, config: RunConfig) -> TrainingSession:
        keeper, spool = FirstRecord(), RecordSpool()
        hooks = RecordHooks(keeper, spool)
        session = TrainingSession(config, max_steps_per_second=self.speed, on_record=hooks)
        self._first_records[session] = keeper
        self.spools[session] = spool
        return session

    def _retire(self, session: TrainingSession) -> None:
        """Stop an old session without blocking the UI (it may be importing torch)."""
        if session.alive:
            self._retired.append(session)
            threading.Thread(target=session.stop, name="gradtui-stop", daemon=True).start()

    def action_quit_app(self) -> None:
        """q: stop the training thread (joined within a second) and leave."""
        if self._timer is not None:
            self._timer.stop()
        self.stop_sessions(timeout=1.0)
        self.exit()

    def stop_sessions(self, timeout: float = 1.0) -> bool:
        """Stop and join every session this app started; True when all have ended."""
        deadline = time.monotonic() + timeout
        ended = True
        for session in [self.session, *self._retired]:
            remaining = max(0.0, deadline - time.monotonic())
            ended = session.stop(timeout=remaining) and ended
        return ended

    def run(self, *args, **kwargs):
        """Run the dashboard; after it closes, let a torch import in flight finish.

        A thread still importing torch when the interpreter shuts down can
        abort the process ("terminate called without an active exception"),
        so a quit pressed while torch loads waits for the import, not the UI.
        """
        try:
            return super().run(*args, **kwargs)
        finally:
            self.join_background(timeout=60.0)

    def join_background(self, timeout: float) -> None:
        """Join the warm-up and every session thread (each stops at its next chance)."""
        deadline = time.monotonic() + timeout
        for session in [self.session, *self._retired]:
            session.stop(timeout=max(0.0, deadline - time.monotonic()))
        if self._warm is not None and self._warm.ident is not None:  # started
            self._warm.join(max(0.0, deadline - time.monotonic()))

    def on_unmount(self) -> None:
        """However the app ends (ctrl+c included), leave no training thread running."""
        if self._timer is not None:
            self._timer.stop()
        self.stop_sessions(timeout=1.0)
        if self._switch_interval is not None:
            sys.setswitchinterval(self._switch_interval)

    def action_slower(self) -> None:
        """-: a lower steps-per-second limit."""
        self._set_speed(shifted_speed(self.speed, -1))

    def action_faster(self) -> None:
        """+: a higher limit, up to unlimited."""
        self._set_speed(shifted_speed(self.speed, +1))

    def _set_speed(self, speed: float | None) -> None:
        self.speed = speed
        self.session.max_steps_per_second = self.speed
        self.refresh_frame()

    def next_view(self) -> str:
        """The view `d` shows next: the views of the switcher, in order, round."""
        views = [child.id for child in self._views.children]
        if self.view not in views:  # not mounted yet
            return self.view
        return views[(views.index(self.view) + 1) % len(views)]

    def action_toggle_view(self) -> None:
        """d: the next view (gradient plots, histograms, and any view added later)."""
        self.view = self.next_view()
        self._views.current = self.view
        self.call_after_refresh(self.refresh_frame)

    def action_toggle_sidebar(self) -> None:
        """c: show or hide the presets and the config form."""
        self._sidebar_choice = not self.screen.has_class("-sidebar")
        self._apply_size(self.size.width, self.size.height)
        if self._sidebar_choice:
            self.query_one("#presets").focus()
        self.call_after_refresh(self.refresh_frame)

    def action_leave_field(self) -> None:
        """escape: leave a form field, so the keys control the run again."""
        self.screen.set_focus(None)

    # -- messages from the widgets ----------------------------------------------
    def on_preset_chosen(self, message: PresetChosen) -> None:
        """Load the preset into the form and explain it; r applies it."""
        preset = PRESETS[message.name]
        self.form_preset = preset.name
        sidebar = self.query_one(Sidebar)
        sidebar.form.load(preset.config)
        sidebar.explain(preset.name)
        self._update_form_notice()

    def on_form_changed(self, message: FormChanged) -> None:
        """Say whether the form is invalid, or differs from what runs."""
        self._update_form_notice()

    def _update_form_notice(self) -> None:
        self.query_one(Sidebar).show_form_state(self.session.config, self.form_preset)
