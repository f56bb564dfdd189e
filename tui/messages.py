"""The messages the dashboard's widgets send up to the app.

Widgets never call the session: they say what the user did, and the app
(the only owner of the session) decides what happens.
"""

from __future__ import annotations

from textual.message import Message

from engine.config import RunConfig


class PresetChosen(Message):
    """The user picked a preset in the list: load it into the form."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name


class FormChanged(Message):
    """The form was edited: its config when valid, else the errors by field."""

    def __init__(self, config: RunConfig | None, errors: dict[str, str]) -> None:
        super().__init__()
        self.config = config
        self.errors = errors
