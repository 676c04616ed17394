"""The checks that state gradients find a memory planted in advance, and the demo's summary.

:func:`stategrad.demo.run_demo` generates a synthetic language (:mod:`stategrad.synth`) in
which a trigger word fixes the word exactly k = 5 or k = 15 steps later and fillers need
no memory, trains a small LSTM on it with the planted (frozen) embeddings, computes the
state gradients of the validation text per ground-truth class, analyses them and writes the HTML report.
It then measures the criteria below and says whether they hold.

What is measured, and why
-------------------------
*Identity memory.*  A trigger's information is *which* trigger it was, so the measure
looks at the embedding directions in which the words of a class differ from each other:
``P_c``, an orthonormal basis of the span of ``Z (x_w - mean_c)`` over the class's words w
(whitened coordinates; ``Z = L^-1``).  The identity memory of class c at delay d is the
sum of the singular values of ``Gbar_{d,c} L P_c`` (normalised) or of ``Gbar_{d,c} P_c^raw``
(raw, with the basis taken from the raw embeddings).  With the planted embeddings these
are exactly the class's identity axes.

*Hidden state.*  The criteria read the LSTM's hidden state h, the input of the decoder.
The model must emit the target when it predicts the word at t + k, i.e. from h at
t + k - 1, so the trigger's identity must reach h at delays up to k - 1 and is no longer
needed once the target has been read at t + k.  The cell state keeps a slowly leaking
copy of every input (its curves decay smoothly for every class, fillers included) and
shows the planted spans much less clearly; the report still shows whatever state is
chosen.

The criteria (``c`` a trigger class with delay k, ``M_c(d)`` its normalised identity
memory, ``r_c(d) = M_c(d) / M_c(0)``):

- ``learned``: the model's cross-entropy on the validation text is within
  ``gap_fraction`` of the smallest cost of forgetting a class (from the generator's exact
  entropy) of what an ideal model scores there; and, per trigger class, the model's most
  likely word at every due position is the right target in at least ``min_accuracy`` of
  the cases (chance: 1 / number of targets).
- ``holds``: ``r_c(k - 1) / r_filler(k - 1) >= min_hold``: the identity of a trigger still
  reaches the state just before its target far more than that of a filler.
- ``rises``: ``max M_c(d)`` over ``d = k-3 .. k-1`` is at least ``min_rise`` times
  ``min M_c(d)`` over ``d = 1 .. k-3``: the curve climbs again towards the delay at which
  the target must be produced (a curve that only decays gives 1).  Only for spans
  k >= ``rise_min_span``: for a short span the fall from delay 0 (the word's direct
  effect) is not over by k - 3, and a plateau cannot be told from a rise.
- ``falls``: ``M_c(k + 1) / M_c(k - 1) <= max_fall``: forgotten once the target is read.
- ``filler forgotten``: ``r_filler(3) <= max_filler``: fillers fall within a few steps.
- ``clears noise``: ``M_c(d)`` is above its noise floor (the sign-flip null of
  :func:`~stategrad.analysis.identity_floor`, 95% simultaneous over delays 1..D-1) at
  every delay d = 1..k-1 at which the trigger must be remembered.  The fillers' floor is
  recorded (``identity_noise`` in summary.json: per class the floor, whether each delay is
  above it, and ``noise_from``, the first delay from which the curve stays within it) but
  not asserted: a finite text can measure the small trace an LSTM keeps of every word.
- ``normalised ranking``: at the delay just before the longest span's target
  (``k_long - 1``), the class with the longer span has more normalised identity memory
  than each class with a shorter span (which no longer needs it).
- ``raw ranking wrong`` (only with the ``unequal`` variance profile, where the class
  remembered longest lives in the most stretched embedding directions): the raw measure
  ranks those classes the other way round at the same delay.  This is the trap the
  normalisation exists for.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import write_text_atomic
from .settings import SUMMARY_FILE, DemoError, DemoSettings


@dataclass
class Criterion:
    name: str
    value: float
    threshold: float
    comparison: str  # "<=", ">=", ">", "<"
    passed: bool
    meaning: str

    def format(self) -> str:
        mark = "PASS" if self.passed else "FAIL"
        return f"  [{mark}] {self.name}: {self.value:.4g} (needs {self.comparison} {self.threshold:g})"


@dataclass
class DemoSummary:
    out_dir: Path
    settings: DemoSettings
    criteria: list[Criterion]
    measures: dict[str, Any]
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.criteria)

    @property
    def failed(self) -> list[Criterion]:
        return [c for c in self.criteria if not c.passed]

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "criteria": [asdict(c) for c in self.criteria],
                "measures": self.measures, "settings": asdict(self.settings),
                "seconds": self.seconds}

    def save(self, path: str | os.PathLike | None = None) -> Path:
        path = Path(path) if path is not None else self.out_dir / SUMMARY_FILE
        write_text_atomic(path, json.dumps(self.to_dict(), indent=1, default=_jsonable) + "\n")
        return path


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def evaluate_criteria(m: dict[str, Any], settings: DemoSettings) -> list[Criterion]:
    """The criteria of the module docstring, from the numbers :func:`measure` returns."""
    out: list[Criterion] = []

    def add(name, value, threshold, comparison, meaning):
        value = float(value)
        ok = bool(np.isfinite(value)) and {
            "<=": value <= threshold, ">=": value >= threshold,
            ">": value > threshold, "<": value < threshold}[comparison]
        out.append(Criterion(name, value, float(threshold), comparison, ok, meaning))

    gap = m["cross_entropy"] - m["ideal_cross_entropy"]
    smallest = min(m["forgetting_cost"].values())
    add("learned: cross-entropy gap to the ideal model (nats)", gap,
        settings.gap_fraction * smallest, "<=",
        f"validation cross-entropy minus the ideal model's on the same text; forgetting the "
        f"cheapest class would cost {smallest:.4f} nats/token")
    for name, acc in m["target_accuracy"].items():
        add(f"learned: {name} target accuracy", acc, settings.min_accuracy, ">=",
            "share of due positions where the model's most likely word is the planted target")
    norm = {k: np.asarray(v, dtype=np.float64) for k, v in m["identity_memory"]["normalised"].items()}
    raw = {k: np.asarray(v, dtype=np.float64) for k, v in m["identity_memory"]["raw"].items()}
    filler = norm["filler"] / norm["filler"][0]
    D = len(filler)
    for name, k in m["spans"].items():
        r = norm[name] / norm[name][0]
        if k + 1 >= D:
            raise DemoError(f"max_delay {D} is too small for the span {k} of {name}: use > {k + 1}")
        add(f"holds: {name} identity memory at delay {k - 1} relative to fillers",
            r[k - 1] / filler[k - 1], settings.min_hold, ">=",
            "r_c(k-1) / r_filler(k-1), r(d) = M(d) / M(0)")
        if k >= settings.rise_min_span:
            before = norm[name][1:k - 2]
            add(f"rises: {name} identity memory just before delay {k} over its earlier low",
                np.nanmax(norm[name][k - 3:k]) / np.nanmin(before), settings.min_rise, ">=",
                f"max of M_c(d) over d = {k - 3}..{k - 1} / min over d = 1..{k - 3}")
        add(f"falls: {name} identity memory at delay {k + 1} / delay {k - 1}",
            norm[name][k + 1] / norm[name][k - 1], settings.max_fall, "<=",
            "M_c(k+1) / M_c(k-1)")
    add("filler forgotten: filler identity memory at delay 3 / delay 0", filler[3],
        settings.max_filler, "<=", "r_filler(3)")
    spans = m["spans"]
    longest = max(spans, key=spans.get)
    d = spans[longest] - 1
    for name, k in spans.items():
        if name == longest or k >= spans[longest]:
            continue
        add(f"normalised ranking: {longest} over {name} at delay {d}",
            norm[longest][d] / norm[name][d], 1.0, ">",
            "ratio of normalised identity memories; the ground truth says > 1")
        if m["variance"] == "unequal":
            add(f"raw ranking wrong: {longest} over {name} at delay {d}",
                raw[longest][d] / raw[name][d], 1.0, "<",
                "ratio of raw identity memories; the stretched embeddings make it < 1")
    _identity_order(add, m)
    _noise_criteria(add, m)
    _property_criteria(add, m, settings.property_check_states)
    return out


def _noise_criteria(add, m: dict[str, Any]) -> None:
    """Each trigger's identity memory is above its noise floor at every delay it is needed.
    (The fillers' is recorded, not asserted: a trained LSTM keeps a small trace of every
    word, which a long enough text measures; docs/synthetic-validation.md.)"""
    noise = m.get("identity_noise")
    if not noise:
        return
    for name, k in m["spans"].items():
        above = noise[name]["above"][1:k]
        add(f"clears noise: {name} identity memory above its noise floor at delays 1..{k - 1}",
            sum(a is not True for a in above), 0, "<=",
            "delays 1..k-1 where the identity memory is not above its noise floor (sign-flip "
            "null, 95% simultaneous over delays 1..D-1)")


def _identity_order(add, m: dict[str, Any]) -> None:
    """The delays where the identity curves bend down most come in the planted order."""
    falls = m.get("identity_fall")
    if not falls:
        return
    spans = m["spans"]
    ordered = sorted(spans, key=spans.get)
    located = [falls.get(n) for n in ordered]
    ok = all(a is not None for a in located) and all(
        a < b for a, b in zip(located, located[1:], strict=False))
    add("identity spans in the planted order: " + " < ".join(
        f"{n} {falls.get(n)}" for n in ordered), float(ok), 1.0, ">=",
        "1 when the delays where the identity curves bend down most (largest_bend) increase "
        "with the planted spans, else 0")


def _property_criteria(add, m: dict[str, Any], states: tuple[str, ...]) -> None:
    """Each planted property stops being kept within one step of its distance K."""
    for state, props in m.get("property_memory", {}).items():
        if state not in states:
            continue
        for name, p in props.items():
            k, fall = p["distance"], p["fall"]["absolute"]
            add(f"property located: {name} ({state} state) |Gbar L n| bends down most at delay "
                f"{fall}, planted {k}", np.nan if fall is None else abs(fall - k), 1.0, "<=",
                "distance from the planted K of the delay where log |Gbar_d L n| bends down "
                "most (largest_bend, from values above the noise floor)")


def describe(summary: DemoSummary) -> str:
    """What the user should look at and see, with the measured numbers."""
    m, out = summary.measures, summary.out_dir
    spans = m["spans"]
    norm = m["identity_memory"]["normalised"]
    raw = m["identity_memory"]["raw"]
    lines = [
        "",
        f"done in {summary.seconds.get('total', 0):.0f} s. Look at:",
        f"  {out / 'report' / 'report.html'}   the report (open it in a browser)",
        f"  {out / 'figures' / 'identity_memory.png'}   identity memory per class (also in "
        "the report)",
        f"  {out / SUMMARY_FILE}   the criteria below, as JSON",
        "",
        f"The model reaches {m['cross_entropy']:.4f} nats/token on the validation text; an ideal "
        f"model that knows the grammar scores {m['ideal_cross_entropy']:.4f} there.",
    ]
    f = np.asarray(norm["filler"]) / norm["filler"][0]
    for name, k in spans.items():
        acc = m["target_accuracy"][name]
        r = np.asarray(norm[name]) / norm[name][0]
        lines.append(
            f"{name}: the word {k} steps after a trigger is predicted right {acc:.1%} of the time. "
            f"Its identity memory (normalised) is {r[k - 1]:.2f} x its delay-0 value at delay "
            f"{k - 1} ({r[k - 1] / f[k - 1]:.0f} x a filler's there) and drops to "
            f"{r[k + 1]:.2f} x at delay {k + 1}: held until the target, then let go.")
    lines.append(f"filler: nothing depends on it; its identity memory is down to {f[1]:.2f} x at "
                 f"delay 1 and {f[3]:.3f} x at delay 3.")
    noise = m.get("identity_noise", {}).get("filler")
    if noise is not None:
        at = noise["noise_from"]
        lines.append("  Against its noise floor (what a class of the same counts with no memory "
                     "would show): " + (f"within it from delay {at} on." if at is not None else
                                        f"still above it at delay {len(f) - 1}, the last "
                                        "computed (a small trace the text is long enough to "
                                        "measure)."))
    longest = max(spans, key=spans.get)
    d = spans[longest] - 1
    for name in spans:
        if name == longest:
            continue
        lines.append(
            f"At delay {d}, normalised, {longest} holds {norm[longest][d] / norm[name][d]:.2f} x "
            f"the identity memory of {name} (right: only {longest} still needs it); raw "
            f"(unnormalised) gradients say {raw[longest][d] / raw[name][d]:.2f} x"
            + (", the wrong order, because the embeddings of " + longest + " are stretched "
               "(variance profile 'unequal'): raw gradients shrink by the stretch."
               if m["variance"] == "unequal" else "."))
    for state, props in m.get("property_memory", {}).items():
        for name, p in props.items():
            lines.append(
                f"{name} (a value the word {p['distance']} steps later must agree with), "
                f"{state} state: the amount kept, |Gbar L n|, bends down most at delay "
                f"{p['fall']['absolute']}; the papers' relative memory |Gbar L n| / s_1 at "
                f"delay {p['fall']['relative']}.")
    plain = m["memory_curve"]["normalised"]
    parts = [f"at delay {k - 1} the curve of {n} is {plain[n][k - 1] / plain['filler'][k - 1]:.1f} x "
             f"the filler's and by delay {k + 1} it has fallen to "
             f"{plain[n][k + 1] / plain[n][k - 1]:.2f} of that" for n, k in spans.items()]
    lines.append(
        "In report.html (log scale) the plain memory curves (all embedding directions) show it "
        "less cleanly: " + "; ".join(parts) + ". The identity-memory figure shows it best, raw "
        "(dashed) against normalised (solid); docs/synthetic-validation.md explains why.")
    lines.append("")
    lines.append("criteria:")
    lines.extend(c.format() for c in summary.criteria)
    lines.append("all criteria hold" if summary.passed
                 else f"{len(summary.failed)} criteria FAILED")
    return "\n".join(lines)
