"""A diagnosis in plain words: what the gradients do, the evidence, the slides' remedies.

`diagnose(history, config)` is a pure function of the recorded statistics (no
torch, no training state), cheap enough to run on every frame. Explosions are
read over the whole run (a NaN at step 11 stays a fact of the run); the state
of the layers from the latest captured statistics. Verdicts, by precedence:

- exploding: a non-finite loss or gradient, the total gradient norm grown
  1000x since the first step, or |dL/dh_t| of an RNN growing 1000x back in time;
- clipping: the raw gradient explodes like that, but value/norm/hook clipping
  holds the applied gradient and the loss stays finite;
- dead: most ReLU outputs of a hidden layer are exactly zero;
- vanishing: the first hidden layer's gradient std is under 1% of the last's,
  activations shrink 3x or more through the stack, or |dL/dh_1| of an RNN is
  under 1/1000 of |dL/dh_T|;
- saturated: most sigmoid/tanh outputs of a hidden layer sit at their bounds;
- healthy: none of the above.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from engine.config import RunConfig
from engine.diagnosis_facts import RunFacts, finite, fmt, module_of, ratio
from engine.history import History
from engine.records import NonFinite, StepRecord

EXPLODING, CLIPPING, DEAD = "exploding", "clipping", "dead"
VANISHING, SATURATED, HEALTHY, WAITING = "vanishing", "saturated", "healthy", "waiting"
VERDICTS = (EXPLODING, CLIPPING, DEAD, VANISHING, SATURATED, HEALTHY, WAITING)

GROWTH = 1e3  # total norm / first norm, or |dL/dh_1| / |dL/dh_T|: exploding above
LAYER_RATIO = 1e-2  # first / last hidden gradient std: vanishing below
ACT_SHRINK = 3.0  # first / last hidden activation std: vanishing above
DEAD_ZERO = 0.9  # fraction of zero ReLU outputs in a hidden layer: dead above
SATURATION = 0.6  # fraction of sigmoid/tanh outputs at a bound: saturated above
TYPICAL_UPDATE = 1e-3  # lr * |grad| / |w| of a layer that learns at a sane pace

# The slides' remedies, naming the config keys to turn.
GAIN = "a recurrent gain near 1 (init_std ≈ 1/√hidden_units)"
LOWER_LR = "lower the learning rate"
BATCH_NORM = "batch norm (batch_norm=true)"
LEAKY = "leaky_relu keeps a gradient for negative inputs"


@dataclass(frozen=True)
class Diagnosis:
    """One verdict with the numbers behind it and what the slides would do about it."""

    verdict: str  # one of VERDICTS
    headline: str  # "vanishing: h1's gradient std is 6.7e-4 of h5's"
    evidence: tuple[str, ...] = ()  # further measured facts, one line each
    remedies: tuple[str, ...] = ()  # the slides' fixes, naming the config keys to turn
    notes: tuple[str, ...] = ()  # side facts whatever the verdict: clipping activity
    step: int | None = None  # the last step read


def diagnose(
    history: History, config: RunConfig | None = None, nonfinite: NonFinite | None = None
) -> Diagnosis:
    """The verdict on the run recorded in `history` (see the module doc).

    `config` sharpens wording and remedies (activation, clip mode, dataset);
    `nonfinite` (the session's first_nonfinite) pins the exact step and layer
    of the first NaN, which an old run's history knows only to a bucket.
    """
    if history.latest is None:
        return Diagnosis(WAITING, "waiting: no training step yet")
    facts = RunFacts(history, config, nonfinite)
    notes = _clip_notes(facts)
    for rule in (_exploding, _dead, _vanishing, _saturated):
        found = rule(facts)
        if found is not None:
            verdict, headline, evidence, remedies = found
            return Diagnosis(
                verdict,
                f"{verdict}: {headline}",
                tuple(evidence),
                tuple(remedies),
                notes,
                history.latest.step,
            )
    return Diagnosis(HEALTHY, f"healthy: {_healthy(facts)}", (), (), notes, history.latest.step)


def diagnose_records(
    records: Iterable[StepRecord],
    config: RunConfig | None = None,
    nonfinite: NonFinite | None = None,
) -> Diagnosis:
    """`diagnose` over a plain sequence of records (a script's own loop)."""
    history = History()
    for record in records:
        history.append(record)
    return diagnose(history, config, nonfinite)


def summary_line(diagnosis: Diagnosis) -> str:
    """One line for the end of a headless run: headline; notes — remedies.

    E.g. "exploding: total gradient norm grew 4.2e13× in 10 steps; loss inf at
    step 11 (fc1) — clip the gradient (clip=norm, value or hook), ...".
    """
    line = "; ".join([diagnosis.headline, *diagnosis.notes])
    if diagnosis.remedies:
        line += " — " + ", ".join(diagnosis.remedies)
    return line


def describe(diagnosis: Diagnosis) -> str:
    """Several lines for a panel: headline, evidence, notes, then remedies."""
    lines = [diagnosis.headline]
    lines += [f"  {line}" for line in (*diagnosis.evidence, *diagnosis.notes)]
    if diagnosis.remedies:
        lines.append("remedies: " + "; ".join(diagnosis.remedies))
    return "\n".join(lines)


# -- the rules: each returns (verdict, headline, evidence, remedies) or None ----------
def _exploding(f: RunFacts):
    short, evidence, raw_exploded = [], [], False
    growth, s0, s1, first, peak = f.growth()
    if growth > GROWTH:
        raw_exploded = True
        short.append(f"total gradient norm grew {fmt(growth)}× in {s1 - s0} steps")
        evidence.append(f"total gradient norm {fmt(first)} at step {s0}, {fmt(peak)} at step {s1}")
    if f.recurrent:
        t_growth, t_step = f.time_peak()
        if t_growth > GROWTH:
            raw_exploded = True
            short.append(
                f"|dL/dh_t| grew {fmt(t_growth)}× back through {f.time_steps} time steps "
                f"(step {t_step})"
            )
            evidence.append(f"total gradient norm peaked at {fmt(peak)} (step {s1})")
            now = f.latest_time_ratio()
            if now < 1 / GROWTH:
                evidence.append(
                    f"now |dL/dh_1| is {fmt(now)} of |dL/dh_{f.time_steps}|: "
                    "after the jump no gradient reaches the early steps"
                )
    bad = f.first_bad()
    if bad is not None:
        step, what, layer = bad
        short.append(f"{what} at step {step}" + (f" ({layer})" if layer != "loss" else ""))
    elif not raw_exploded:
        return None
    evidence += _saturation(f)
    remedies = _explode_remedies(f)
    if bad is None and f.clip in ("value", "norm", "hook"):
        applied = f.latest.grad_norm_clipped
        evidence.append(f"clipping holds the applied gradient norm at {fmt(applied)}")
        headline = "the raw gradient explodes and clipping holds it: " + "; ".join(short)
        return CLIPPING, headline, evidence, remedies
    return EXPLODING, "; ".join(short), evidence, remedies


def _explode_remedies(f: RunFacts) -> list[str]:
    if f.recurrent:
        return ["clip inside the recurrence (clip=timestep)", GAIN, LOWER_LR]
    remedies = ["clip the gradient (clip=norm, value or hook)", LOWER_LR]
    config = f.config
    if config is None or (config.dataset == "regression" and not config.standardize_target):
        remedies.append("standardize the target (standardize_target=true)")
    return remedies


def _dead(f: RunFacts):
    for name in f.hidden:
        stats = f.acts.get(name)
        zero = stats.act_zero_frac if stats else None
        if zero is not None and zero > DEAD_ZERO:
            grad = f.grads[name].grad_norm if name in f.grads else None
            headline = f"{zero:.0%} of {module_of(name)}'s activations are exactly zero"
            evidence = [f"{name}'s gradient norm is {fmt(grad)}"]
            remedies = [LOWER_LR, "Kaiming init (init=kaiming_uniform)", LEAKY]
            return DEAD, headline, evidence, remedies
    return None


def _vanishing(f: RunFacts):
    if f.recurrent:
        now = f.latest_time_ratio()
        if not now < 1 / GROWTH:
            return None
        headline = (
            f"|dL/dh_1| is {fmt(now)} of |dL/dh_{f.time_steps}|: "
            "the loss no longer reaches the early time steps"
        )
        remedies = [GAIN, "shorter sequences", "gated cells (GRU, LSTM) carry gradients further"]
        return VANISHING, headline, _saturation(f), remedies
    pair = f.hidden_pair()
    if pair is None:
        return None
    first, last = pair
    g_first, g_last = f.grads.get(first), f.grads.get(last)
    if g_first is None or g_last is None:
        return None
    g_ratio = ratio(g_first.grad_std, g_last.grad_std)
    a_first, a_last = f.acts.get(first), f.acts.get(last)
    shrink = ratio(a_first.act_std, a_last.act_std) if a_first and a_last else float("nan")
    evidence = []
    if g_ratio < LAYER_RATIO:
        headline = f"{first}'s gradient std is {fmt(g_ratio)} of {last}'s"
        if shrink > ACT_SHRINK:
            evidence.append(_shrink_line(first, last, shrink, a_first, a_last))
    elif shrink > ACT_SHRINK:
        headline = _shrink_line(first, last, shrink, a_first, a_last)
        evidence.append(f"{first}'s gradient std is {fmt(g_ratio)}× {last}'s")
    else:
        return None
    if f.activation == "sigmoid" and a_first is not None:
        evidence.append(
            "sigmoid's slope is at most 0.25, so every layer scales the gradient down "
            f"({first} activation mean {fmt(a_first.act_mean)}, std {fmt(a_first.act_std)})"
        )
    evidence += _saturation(f)
    update = g_first.update_ratio
    if finite(update) and update < TYPICAL_UPDATE / 100:
        evidence.append(
            f"{first} moves {fmt(update)} of its size per step (update/weight ratio; ~1e-3 is typical)"
        )
    matched = "Kaiming" if f.activation in ("relu", "leaky_relu") else "Xavier/Kaiming"
    remedies = [f"{matched} init matched to the activation", BATCH_NORM]
    if f.activation == "sigmoid":
        remedies.append("ReLU or tanh instead of sigmoid")
    return VANISHING, headline, evidence, remedies


def _saturated(f: RunFacts):
    lines = _saturation(f)
    if not lines:
        return None
    remedies = ["smaller initial weights (Xavier init)", LOWER_LR, BATCH_NORM]
    return SATURATED, lines[0], lines[1:], remedies


def _saturation(f: RunFacts) -> list[str]:
    for name in f.hidden:
        stats = f.acts.get(name)
        sat = stats.act_saturation if stats else None
        if finite(sat) and sat > SATURATION:
            kind = f.activation or "the activation"
            return [
                f"{kind} saturates: {sat:.0%} of {module_of(name)}'s outputs sit at a bound, "
                "where the slope is ~0"
            ]
    return []


def _shrink_line(first, last, shrink, a, b) -> str:
    return (
        f"activations shrink {fmt(shrink)}× from {first} to {last} "
        f"(std {fmt(a.act_std)} → {fmt(b.act_std)})"
    )


# -- verdict-independent lines ----------------------------------------------------------
def _clip_notes(f: RunFacts) -> tuple[str, ...]:
    if f.clip in (None, "none"):
        return ()
    if f.clip == "timestep":
        return (
            f"timestep clipping clamps dL/dh_t to ±{fmt(f.config.clip_value)} at every step "
            f"(largest |dL/dh_t| before the clamp: {fmt(f.largest_timestep_norm())})",
        )
    frac = f.clipped_frac()
    if frac is None:
        return ()
    if f.clip == "norm":
        return (
            f"norm clipping rescaled the gradient on {frac:.0%} of recent steps "
            f"(raw norm {fmt(f.latest.grad_norm)} → at most {fmt(f.config.max_norm)})",
        )
    return (f"clipping active on {frac:.0%} of gradient elements (recent steps)",)


def _healthy(f: RunFacts) -> str:
    trend = f.loss_trend()
    loss = f"; loss {fmt(trend[0])} → {fmt(trend[1])}" if trend else ""
    if f.recurrent:
        now = f.latest_time_ratio()
        return f"|dL/dh_1| is {fmt(now)}× |dL/dh_{f.time_steps}|{loss}"
    pair = f.hidden_pair()
    if pair and pair[0] in f.grads and pair[1] in f.grads:
        first, last = pair
        g = ratio(f.grads[first].grad_std, f.grads[last].grad_std)
        return (
            f"gradients of similar size in every layer ({first}'s std is {fmt(g)}× {last}'s){loss}"
        )
    _, _, _, first, _ = f.growth()
    return f"gradient norm steady ({fmt(first)} → {fmt(f.latest.grad_norm)}){loss}"
