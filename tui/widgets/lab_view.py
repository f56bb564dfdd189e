"""The Lab view: the diagnosis in words beside the update/weight ratio and the saturation."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Grid

from tui.widgets.diagnosis_panel import DiagnosisPanel
from tui.widgets.signal_plots import SaturationPlot, UpdateRatioPlot


class LabView(Grid):
    """Diagnosis on the left (both rows); the two signals stacked on the right."""

    DEFAULT_CSS = """
    LabView { grid-size: 2 2; grid-columns: 1fr 1fr; grid-rows: 1fr 1fr; height: 1fr; }
    LabView > DiagnosisPanel { row-span: 2; }
    """

    def compose(self) -> ComposeResult:
        """The three panels."""
        yield DiagnosisPanel(id="diagnosis")
        yield UpdateRatioPlot(id="update-ratio")
        yield SaturationPlot(id="saturation")
