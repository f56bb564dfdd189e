"""A modal list of presets: what to compare the form's config with."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label, OptionList
from textual.widgets.option_list import Option

from engine.presets import PRESETS


class PresetPicker(ModalScreen[str | None]):
    """Dismissed with the chosen preset's name, or None (escape)."""

    DEFAULT_CSS = """
    PresetPicker { align: center middle; }
    PresetPicker > Vertical {
        width: 76; max-width: 100%; height: auto; max-height: 100%;
        border: round $accent; background: $surface; padding: 0 1;
    }
    PresetPicker .title { text-style: bold; }
    PresetPicker .hint { color: $text-muted; }
    PresetPicker OptionList { height: auto; max-height: 16; margin: 1 0 0 0; }
    """

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, title: str, exclude: str | None = None) -> None:
        super().__init__()
        self.title_text = title
        self.exclude = exclude

    def compose(self) -> ComposeResult:
        """The title and one option per preset (name and title)."""
        width = max(len(name) for name in PRESETS)
        options = [
            Option(Text.assemble((name.ljust(width + 2), "bold"), preset.title), id=name)
            for name, preset in PRESETS.items()
        ]
        with Vertical():
            yield Label(self.title_text, classes="title")
            yield Label("enter compares, escape cancels; same seeds on both sides", classes="hint")
            yield OptionList(*options, id="compare-presets")

    def on_mount(self) -> None:
        """Focus the list on the first preset other than the one already running."""
        options = self.query_one(OptionList)
        options.focus()
        names = list(PRESETS)
        start = next((i for i, n in enumerate(names) if n != self.exclude), 0)
        options.highlighted = start

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        """Enter: compare with this preset."""
        event.stop()
        self.dismiss(event.option.id)

    def action_cancel(self) -> None:
        """escape: back to the dashboard."""
        self.dismiss(None)
