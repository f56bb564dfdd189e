"""A small modal asking for a file path: save or load a config, export records, a screenshot.

The dialog only asks; the app's `submit` callback does the work and returns
an error line (naming the field, e.g. "path: directory '/x' does not exist")
or None. On an error the dialog stays open with the path as typed, so the
user fixes it instead of retyping it. Writing over an existing file needs
enter pressed twice: nothing the user had is replaced by accident.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static


class PathDialog(ModalScreen[str | None]):
    """Asks for a path; dismissed with it once `submit(path)` returned no error."""

    DEFAULT_CSS = """
    PathDialog { align: center middle; }
    PathDialog > Vertical {
        width: 72; max-width: 100%; height: auto;
        border: round $accent; background: $surface; padding: 0 1;
    }
    PathDialog .title { text-style: bold; }
    PathDialog .hint { color: $text-muted; }
    PathDialog Input { margin: 1 0 0 0; }
    PathDialog #path-error { color: $error; text-style: bold; height: auto; }
    PathDialog #path-error.-warning { color: $warning; }
    PathDialog Horizontal { height: 1; margin: 1 0 0 0; }
    PathDialog Button { margin: 0 2 0 0; }
    """

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(
        self,
        title: str,
        value: str,
        submit: Callable[[str], str | None],
        hint: str = "",
        overwrite_check: bool = True,
    ) -> None:
        super().__init__()
        self.title_text = title
        self.initial = value
        self.submit = submit
        self.hint = hint
        self.overwrite_check = overwrite_check
        self._confirmed: str | None = None  # the existing path enter was pressed twice on

    def compose(self) -> ComposeResult:
        """Title, hint, the path field, its error line, and the buttons."""
        with Vertical():
            yield Label(self.title_text, classes="title")
            if self.hint:
                yield Label(self.hint, classes="hint")
            yield Input(self.initial, id="path", select_on_focus=False)
            yield Static("", id="path-error")
            with Horizontal():
                yield Button("OK", id="ok", compact=True, variant="primary")
                yield Button("Cancel", id="cancel", compact=True)

    def on_mount(self) -> None:
        """Focus the path with the cursor at its end."""
        field = self.query_one("#path", Input)
        field.focus()
        field.cursor_position = len(field.value)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        """Enter: try the path."""
        event.stop()
        self.attempt()

    def on_input_changed(self, event: Input.Changed) -> None:
        """Editing the path withdraws a pending overwrite question."""
        self._confirmed = None
        self.show_error("")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        """OK tries the path; Cancel closes."""
        event.stop()
        if event.button.id == "ok":
            self.attempt()
        else:
            self.dismiss(None)

    def action_cancel(self) -> None:
        """escape: close without doing anything."""
        self.dismiss(None)

    def attempt(self) -> None:
        """Run `submit` on the typed path; close on success, else show why."""
        path = os.path.expanduser(self.query_one("#path", Input).value.strip())
        if not path:
            self.show_error("path: type a file name")
            return
        if self.overwrite_check and os.path.isfile(path) and self._confirmed != path:
            self._confirmed = path
            self.show_error(f"path: {path} exists: enter again to replace it", warning=True)
            return
        error = self.submit(path)
        if error:
            self._confirmed = None
            self.show_error(error)
            return
        self.dismiss(path)

    def show_error(self, message: str, warning: bool = False) -> None:
        """One line under the field (empty hides it)."""
        line = self.query_one("#path-error", Static)
        line.update(message)
        line.set_class(warning, "-warning")
