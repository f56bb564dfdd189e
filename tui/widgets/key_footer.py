"""Textual's footer, on as many rows as it takes (at most three) to list every key.

The dashboard has more keys than one row of 80 columns holds, and every
binding must stay visible. This footer lays its keys out on a grid: one row
when they fit, else two (or three), with as few rows as the width allows.
"""

from __future__ import annotations

import math

from textual.events import Resize
from textual.widgets import Footer
from textual.widgets._footer import FooterKey

MAX_ROWS = 3


class KeyFooter(Footer):
    """A Footer whose keys wrap onto extra rows instead of scrolling out of sight."""

    DEFAULT_CSS = """
    KeyFooter { layout: grid; grid-columns: auto; grid-rows: 1; height: auto; }
    KeyFooter.-compact FooterKey { margin: 0; padding: 0 1 0 0; }
    """

    def compose(self):
        """Footer's keys, then the number of grid columns that fits the width."""
        keys = list(super().compose())
        yield from keys
        self._fit(keys, self.app.size.width)

    def on_resize(self, event: Resize) -> None:
        """Refit the keys to the new width."""
        self._fit(list(self.query_children(FooterKey)), event.size.width)

    def _fit(self, keys: list, width: int) -> None:
        widths = [_key_width(key) for key in keys if isinstance(key, FooterKey)]
        if not widths:
            return
        columns = len(widths)
        for rows in range(1, MAX_ROWS + 1):
            columns = math.ceil(len(widths) / rows)
            grid = [max(widths[c::columns]) for c in range(columns)]
            if sum(grid) <= width:
                break
        if self.styles.grid_size_columns != columns:
            self.styles.grid_size_columns = columns


def _key_width(key: FooterKey) -> int:
    """Cells a compact footer key takes: key, space, description, right margin."""
    return len(key.key_display) + 1 + len(key.description) + 1
