"""The side panel: the preset list, the chosen preset's story, and the config form."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.lazy import Lazy
from textual.widgets import Label, Static

from engine.config import RunConfig
from engine.presets import PRESETS
from tui.runs import run_label
from tui.widgets.config_form import ConfigForm
from tui.widgets.preset_list import PresetList


class Sidebar(Vertical):
    """Presets on top, the form below, one scroll; the app shows or hides the panel.

    One scroll rather than fixed sections, so the form stays reachable at 24
    rows: focusing a field scrolls it into view. The form's notice line sits
    under the scroll, in view however far it is scrolled.
    """

    DEFAULT_CSS = """
    Sidebar { width: 36; height: 1fr; border-right: tall $panel-lighten-1; }
    Sidebar > VerticalScroll { height: 1fr; scrollbar-size-vertical: 1; }
    Sidebar .heading { text-style: bold; color: $accent; }
    Sidebar #explanation { height: auto; color: $text-muted; margin: 0 0 0 0; }
    Sidebar #form-notice { height: auto; display: none; }
    Sidebar #form-notice.-shown { display: block; }
    Sidebar #form-notice.-error { color: $error; text-style: bold; }
    Sidebar #form-notice.-pending { color: $warning; }
    """

    def __init__(self, config: RunConfig, preset: str | None, **kwargs) -> None:
        super().__init__(**kwargs)
        self._preset = preset
        # Mounted after the first frame (Lazy): 212 of the dashboard's 270
        # widgets are the form's, and styling them held the first frame back
        # (1.66 -> 0.81 s to it on 2 cores, alternating five rounds). Until it
        # mounts, the form answers from the config it will show.
        self.form = ConfigForm(config, id="form")

    def compose(self) -> ComposeResult:
        """Headings, the list, the explanation, the form and its notice line."""
        with VerticalScroll(id="sidebar-scroll"):
            yield Label("Presets (enter loads into the form)", classes="heading")
            yield PresetList(self._preset, id="presets")
            yield Static(id="explanation")
            yield Label("Config (r resets with it)", classes="heading")
            yield Lazy(self.form)
        yield Static(id="form-notice")

    def on_mount(self) -> None:
        """Explain the starting preset."""
        self.explain(self._preset)

    def explain(self, name: str | None) -> None:
        """Show a preset's title and two-line explanation (or nothing)."""
        text = Text()
        preset = PRESETS.get(name) if name else None
        if preset is not None:
            text.append(f"{preset.name}: {preset.title}\n", style="bold")
            text.append(preset.explanation)
        self.query_one("#explanation", Static).update(text)

    def show_form_state(self, running: RunConfig, preset: str | None) -> None:
        """Say above the form why a reset is refused, or what it would start."""
        form = self.form
        if form.errors:
            names = ", ".join(form.errors)
            self.notice(f"✖ invalid {names}: reset refused until fixed", "error")
        elif form.config is not None and form.config != running:
            self.notice(f"● r resets with: {run_label(form.config, preset)}", "pending")
        else:
            self.notice("")

    def notice(self, message: str, kind: str = "") -> None:
        """A line at the panel's foot: why a reset is refused, or that one is pending."""
        notice = self.query_one("#form-notice", Static)
        notice.update(message)
        notice.set_class(bool(message), "-shown")
        notice.set_class(kind == "error", "-error")
        notice.set_class(kind == "pending", "-pending")
