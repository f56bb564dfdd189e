"""The preset list: name and title of every experiment, one line each."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import OptionList
from textual.widgets.option_list import Option

from engine.presets import PRESETS
from tui.messages import PresetChosen


class PresetList(OptionList):
    """Every registered preset; enter or a click chooses one."""

    DEFAULT_CSS = """
    PresetList { height: auto; max-height: 13; text-wrap: nowrap; text-overflow: ellipsis; }
    """

    def __init__(self, current: str | None = None, **kwargs) -> None:
        width = max((len(name) for name in PRESETS), default=0) + 2
        options = []
        for name, preset in PRESETS.items():
            prompt = Text(no_wrap=True, overflow="ellipsis")
            prompt.append(name.ljust(width), style="bold")
            prompt.append(preset.title, style="dim")
            options.append(Option(prompt, id=name))
        super().__init__(*options, compact=True, **kwargs)
        if current in PRESETS:
            self.highlighted = list(PRESETS).index(current)

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        """Turn the generic selection into a PresetChosen for the app."""
        event.stop()
        if event.option.id is not None:
            self.post_message(PresetChosen(event.option.id))
