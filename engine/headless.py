"""`gradtui run`: train a configuration without a screen, export, summarize.

Progress goes to stderr; the summary (final loss, first non-finite step and
layer, the diagnosis) ends the run. Ctrl+C (or SIGTERM) abandons the step in
flight, commits the export of the steps done, and exits 130 (143); a failure
leaves the output file as it was.
"""

from __future__ import annotations

import math
import signal
import sys
import time
from dataclasses import dataclass
from typing import TextIO

from engine.collector import import_quietly
from engine.config import RunConfig
from engine.interrupts import InterruptGate, interrupt_gate
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
    timesteps: str | None = None  # an RNN's |dL/dh_1| / |dL/dh_T|, the heat map's gist
    exported: int = 0  # records committed to the --out file (0: nothing written)
    capture: str | None = None  # how many steps carried statistics and activations
    signal: int = 0  # the signal that interrupted it: SIGINT (Ctrl+C) or SIGTERM

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
            out.append("interrupted: the run ended early, after the steps above")
        if self.capture:
            out.append(self.capture)
        if self.timesteps:
            out.append(self.timesteps)
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


class RunFailed(Exception):
    """Training or the export failed: the message names the step or the file, and the error."""


def _write_failed(writer, exc: OSError) -> RunFailed:
    return RunFailed(f"could not write {writer.path}: {exc}".splitlines()[0])


def run_headless(
    config: RunConfig,
    out: str | None = None,
    stderr: TextIO = sys.stderr,
    progress_every: float = 1.0,
) -> RunSummary:
    """Train `config` to the end (or the first non-finite step under pause/stop).

    Ctrl+C ends the run after the steps done: their export is committed (a run
    interrupted before its first step writes nothing, so an older file under
    `out` is kept). A failure keeps nothing new and leaves `out` as it was.
    """
    from engine.export import RecordWriter

    with interrupt_gate() as gate:
        writer = None
        run = _Progress()
        failure: BaseException | None = None
        try:
            writer = RecordWriter(out) if out else None
            _train(config, writer, run, stderr, progress_every, gate)
        except KeyboardInterrupt as interrupt:
            run.interrupted = True
            run.signal = getattr(interrupt, "signum", signal.SIGINT)
        except BaseException as exc:
            failure = exc
        finally:
            # From here a signal is noted, never raised: the cleanup runs whole.
            gate.recording = True
            gate.hold()
        if run.trainer is not None:
            run.trainer.close()
        if writer is not None:
            if failure is None and writer.count:
                try:
                    writer.commit()  # the last batch is written here (a full disk fails it)
                except OSError as exc:
                    raise _write_failed(writer, exc) from exc
            else:
                writer.discard()
    if isinstance(failure, RunFailed):
        raise failure
    if isinstance(failure, Exception) and run.last is not None:
        step = run.last.step + 1
        error = f"{type(failure).__name__}: {failure}".splitlines()[0]
        raise RunFailed(f"failed at step {step}: {error}") from failure
    if failure is not None:
        raise failure
    last = run.last
    nonfinite = run.trainer.first_nonfinite if run.trainer else None
    if nonfinite is not None and (last is None or nonfinite.step > last.step):
        nonfinite = None  # found by a step that Ctrl+C cut short
    return RunSummary(
        steps=last.step + 1 if last else 0,
        epochs=last.epoch + 1 if last else 0,
        final_loss=last.loss if last else None,
        first_nonfinite=nonfinite,
        interrupted=run.interrupted,
        verdict=_verdict(run.history, config),
        timesteps=_timestep_line(run.history),
        exported=writer.count if writer is not None and writer.count else 0,
        capture=_capture_line(run, config),
        signal=run.signal,
    )


def _capture_line(run, config: RunConfig) -> str | None:
    """How many steps carried what, e.g. 'captured: statistics on 520 of 2000 steps ...'."""
    if run.last is None:
        return None
    steps = run.last.step + 1
    how = "the sampling budget" if config.sampling == "budget" else "exact sampling"
    return (
        f"captured: loss and total gradient norm on every step, layer statistics on "
        f"{run.stats_steps} of {steps}, activations on {run.activation_steps} ({how})"
    )


class _Progress:
    """What the loop has done so far, readable after it was interrupted."""

    def __init__(self) -> None:
        self.trainer = None
        self.history = None
        self.last: StepRecord | None = None
        self.interrupted = False
        self.stats_steps = self.activation_steps = 0
        self.signal = 0  # the signal that interrupted the run, if one did


def _train(
    config: RunConfig, writer, run: _Progress, stderr: TextIO, every: float, gate: InterruptGate
) -> None:
    Trainer = import_quietly("engine.trainer").Trainer  # torch, with no collections

    run.trainer = trainer = Trainer(config)
    run.history = _history_for_diagnosis()
    last_report = time.monotonic()
    while not trainer.finished:
        record = trainer.step()  # a signal abandons the step in flight at once
        gate.recording = True  # and from here waits until the step is recorded
        run.last = record
        if writer is not None:
            try:
                writer.write(record)
            except OSError as exc:  # a full disk: the export failed, not the training
                raise _write_failed(writer, exc) from exc
        run.stats_steps += record.captured
        run.activation_steps += record.activations_captured
        run.history.append(record)
        now = time.monotonic()
        if now - last_report >= every:
            last_report = now
            print(
                f"step {record.step + 1}/{trainer.total_steps}  epoch "
                f"{record.epoch + 1}/{config.epochs}  loss {format_number(record.loss)}",
                file=stderr,
                flush=True,
            )
        gate.check()  # recorded: a signal that came meanwhile ends the run here
        # With nobody to resume it, a pause at the first NaN ends the run like stop.
        if trainer.first_nonfinite is not None and config.on_nonfinite != "continue":
            break


def _history_for_diagnosis():
    from engine.history import History

    return History()


def _timestep_line(history) -> str | None:
    """For an RNN: how much the gradient grew back through time, last step and worst step."""
    if history is None or history.count == 0:
        return None
    from engine.diagnosis_facts import RunFacts, fmt

    facts = RunFacts(history, None, None)
    if not facts.recurrent:
        return None
    last = f"|dL/dh_1| / |dL/dh_{facts.time_steps}|"
    peak, at = facts.time_peak()
    return (
        f"dL/dh_t: {last} = {fmt(facts.latest_time_ratio())} at the last step "
        f"({history.latest.step}), largest {fmt(peak)} at step {at}"
    )


def _verdict(history, config: RunConfig) -> str | None:
    try:
        from engine.diagnosis import diagnose, summary_line
    except ImportError:
        return None
    if history is None or history.count == 0:
        return None
    try:
        return summary_line(diagnose(history, config))
    except Exception as exc:  # the run and its export are done; say so, do not fail them
        return f"unavailable ({type(exc).__name__}: {exc})".splitlines()[0]
