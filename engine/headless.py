"""`gradtui run`: train a configuration without a screen, export, summarize.

Progress goes to stderr; the summary (final loss, first non-finite step and
layer, the diagnosis) ends the run. Ctrl+C stops after the current step,
commits the export of the steps done, and exits 130.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from typing import TextIO

from engine.config import RunConfig
from engine.records import NonFinite, StepRecord


@dataclass(frozen=True)
class RunSummary:
    """What a headless run ends with."""

    steps: int
    epochs: int
    final_loss: float | None
    first_nonfinite: NonFinite | None
    interrupted: bool
    verdict: str | None = None  # the diagnosis line, when available

    def lines(self) -> list[str]:
        """The summary as printed."""
        loss = "n/a" if self.final_loss is None else format_number(self.final_loss)
        out = [f"steps: {self.steps}  epochs: {self.epochs}  final loss: {loss}"]
        if self.first_nonfinite is not None:
            out.append(
                f"first non-finite: step {self.first_nonfinite.step}, "
                f"layer {self.first_nonfinite.layer} ({self.first_nonfinite.what})"
            )
        else:
            out.append("first non-finite: none")
        if self.interrupted:
            out.append("interrupted: the export holds the steps done")
        if self.verdict:
            out.append(f"verdict: {self.verdict}")
        return out


def format_number(value: float) -> str:
    """Compact, plain rendering of a number, NaN and infinity included."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
        return f"{value:.3e}"
    return f"{value:.4f}"


def run_headless(
    config: RunConfig,
    out: str | None = None,
    stderr: TextIO = sys.stderr,
    progress_every: float = 1.0,
) -> RunSummary:
    """Train `config` to the end (or the first non-finite step under pause/stop)."""
    from engine.export import RecordWriter
    from engine.trainer import Trainer

    writer = RecordWriter(out) if out else None
    trainer = None
    last: StepRecord | None = None
    history = None
    interrupted = False
    try:
        trainer = Trainer(config)
        history = _history_for_diagnosis()
        last_report = time.monotonic()
        while not trainer.finished:
            try:
                last = trainer.step()
            except KeyboardInterrupt:
                interrupted = True
                break
            if writer is not None:
                writer.write(last)
            if history is not None:
                history.append(last)
            now = time.monotonic()
            if now - last_report >= progress_every:
                last_report = now
                print(
                    f"step {trainer.step_index}/{trainer.total_steps}  epoch "
                    f"{trainer.epoch + 1}/{config.epochs}  loss {format_number(last.loss)}",
                    file=stderr,
                    flush=True,
                )
            # With nobody to resume it, a pause at the first NaN ends the run like stop.
            if trainer.first_nonfinite is not None and config.on_nonfinite != "continue":
                break
    except KeyboardInterrupt:
        interrupted = True
    except BaseException:
        if writer is not None:
            writer.discard()
        raise
    finally:
        if trainer is not None:
            trainer.close()
    if writer is not None:
        writer.commit()
    return RunSummary(
        steps=trainer.step_index if trainer else 0,
        epochs=(trainer.epoch + 1) if trainer and trainer.step_index else 0,
        final_loss=last.loss if last else None,
        first_nonfinite=trainer.first_nonfinite if trainer else None,
        interrupted=interrupted,
        verdict=_verdict(history, config),
    )


def _history_for_diagnosis():
    from engine.history import History

    return History()


def _verdict(history, config: RunConfig) -> str | None:
    try:
        from engine.diagnosis import diagnose, summary_line
    except ImportError:
        return None
    if history is None or history.count == 0:
        return None
    return summary_line(diagnose(history, config))
