"""The form: one field per RunConfig knob, validated as the user types.

Selects for the fields with fixed choices, switches for booleans, inputs for
numbers. Every edit is checked with the engine's own rules (parse_value for
the field's text, then RunConfig(...) for the rules that tie fields
together); a bad field is marked with the reason under it, and the app is
told the form's config is unusable, so a reset is refused. The running
session is never touched from here.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Input, Label, Select, Static, Switch

from engine.config import CHOICES, FIELD_TYPES, ConfigError, RunConfig, field_comment, parse_value
from engine.devices import check_device
from tui.messages import FormChanged

# Sections in the order of the slides; a field added to RunConfig later and
# not listed here still appears, under "more".
GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("data", ("dataset", "n_samples", "n_features", "standardize_target", "seq_len")),
    ("model", ("model", "n_layers", "hidden_units", "activation", "batch_norm")),
    ("initialization", ("init", "init_std", "seed", "init_seed")),
    ("optimization", ("optimizer", "lr", "momentum", "batch_size", "shuffle", "epochs")),
    ("clipping", ("clip", "clip_value", "max_norm", "norm_type")),
    ("watching", ("on_nonfinite", "capture_every", "activation_every", "device")),
)


def _on_off(value: bool) -> str:
    return " on" if value else " off"


def _field_text(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, float):
        return repr(value)
    return str(value)


class ConfigForm(Vertical):
    """Every RunConfig knob as a form field; posts FormChanged on every edit."""

    BINDINGS = [Binding("escape", "app.leave_field", "Leave field")]

    DEFAULT_CSS = """
    ConfigForm { height: auto; }
    ConfigForm .group { color: $text-muted; text-style: bold; margin: 1 0 0 0; }
    ConfigForm .field-box { height: auto; }
    ConfigForm .field { height: 1; }
    ConfigForm .field-name { width: 18; color: $text; }
    ConfigForm .field Input, ConfigForm .field Select { width: 1fr; }
    ConfigForm Switch { border: none; height: 1; padding: 0; width: 4; }
    ConfigForm .field-error { color: $error; display: none; padding: 0 0 0 2; }
    ConfigForm .field-box.-invalid .field-error { display: block; }
    ConfigForm .field-box.-invalid .field-name { color: $error; text-style: bold; }
    ConfigForm .field-box.-invalid Input { background: $error 25%; }
    """

    def __init__(self, config: RunConfig, **kwargs) -> None:
        super().__init__(**kwargs)
        self._initial = config
        self.config: RunConfig | None = config  # the form's config when valid
        self.errors: dict[str, str] = {}
        self._widgets: dict[str, Input | Select | Switch] = {}

    def compose(self) -> ComposeResult:
        """Sections of labelled fields, each with a hidden error line."""
        listed = {name for _, names in GROUPS for name in names}
        rest = tuple(f.name for f in fields(RunConfig) if f.name not in listed)
        for title, names in GROUPS + ((("more", rest),) if rest else ()):
            names = tuple(n for n in names if n in FIELD_TYPES)
            if not names:
                continue
            yield Label(title, classes="group")
            for name in names:
                widget = self._make_widget(name, getattr(self._initial, name))
                self._widgets[name] = widget
                with Vertical(classes="field-box", id=f"box-{name}"):
                    with Horizontal(classes="field"):
                        yield Label(name, classes="field-name")
                        yield widget
                        if isinstance(widget, Switch):
                            yield Label(_on_off(widget.value), id=f"state-{name}")
                    yield Static("", classes="field-error", id=f"error-{name}")

    def _make_widget(self, name: str, value: Any) -> Input | Select | Switch:
        tip = field_comment(name)
        if name in CHOICES:
            options = [(choice, choice) for choice in CHOICES[name]]
            widget = Select(
                options, value=value, allow_blank=False, compact=True, id=f"field-{name}"
            )
        elif FIELD_TYPES[name] == "bool":
            widget = Switch(value=bool(value), animate=False, id=f"field-{name}")
        else:
            widget = Input(
                _field_text(value), compact=True, id=f"field-{name}", select_on_focus=False
            )
        widget.tooltip = tip or None
        return widget

    def field(self, name: str) -> Input | Select | Switch:
        """The widget of one field (for the app and the tests)."""
        return self._widgets[name]

    def load(self, config: RunConfig) -> None:
        """Show `config` in every field (a preset was chosen)."""
        if not self._widgets:  # not composed yet (mounted lazily): composed with it
            self._initial = self.config = config
            self.errors = {}
            return
        for name, widget in self._widgets.items():
            value = getattr(config, name)
            if isinstance(widget, Input):
                widget.value = _field_text(value)
            else:
                widget.value = value
        self.validate()

    def validate(self) -> RunConfig | None:
        """Check every field and the whole; mark the bad ones; tell the app."""
        if not self._widgets:  # not composed yet (mounted lazily): the config it will show
            return self.config
        values: dict[str, Any] = {}
        errors: dict[str, str] = {}
        for name, widget in self._widgets.items():
            try:
                values[name] = self._read(name, widget)
            except ConfigError as error:
                errors[name] = error.reason
        config = None
        if not errors:
            try:
                config = RunConfig(**values)
                check_device(config)
            except ConfigError as error:
                name = error.field if error.field in self._widgets else next(iter(self._widgets))
                errors[name] = error.reason
        if errors:
            config = None
        changed = (config, errors) != (self.config, self.errors)
        self.config, self.errors = config, errors
        if not self.is_mounted:  # composed, its fields not yet mounted: nothing to mark
            return config
        for name in self._widgets:
            box = self.query_one(f"#box-{name}")
            box.set_class(name in errors, "-invalid")
            if name in errors:
                self.query_one(f"#error-{name}", Static).update(f"↳ {errors[name]}")
        if changed:
            self.post_message(FormChanged(config, dict(errors)))
        return config

    @staticmethod
    def _read(name: str, widget: Input | Select | Switch) -> Any:
        if isinstance(widget, Input):
            return parse_value(name, widget.value)
        if isinstance(widget, Select):
            if widget.value is Select.BLANK:
                raise ConfigError(name, "choose a value")
            return widget.value
        return bool(widget.value)

    def on_input_changed(self, event: Input.Changed) -> None:
        """Validate on every keystroke."""
        event.stop()
        self.validate()

    def on_select_changed(self, event: Select.Changed) -> None:
        """Validate on every choice."""
        event.stop()
        self.validate()

    def on_switch_changed(self, event: Switch.Changed) -> None:
        """Validate on every toggle."""
        event.stop()
        name = event.switch.id.removeprefix("field-")
        self.query_one(f"#state-{name}", Label).update(_on_off(event.value))
        self.validate()
