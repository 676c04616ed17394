"""The one-command demo, and the checks that state gradients find a memory planted in advance.

:func:`run_demo` generates a synthetic language (:mod:`stategrad.synth`) in which a trigger
word fixes the word exactly k = 5 or k = 15 steps later and fillers need no memory, trains
a small LSTM on it with the planted (frozen) embeddings, computes the state gradients of
the validation text per ground-truth class, analyses them and writes the HTML report.
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
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .analysis import EmbeddingStats, embedding_matrix, embedding_stats_for_model, memory_curves
from .data import read_tokens
from .gradients import GradientResult, compute_state_gradients
from .lm import LanguageModel, TrainConfig
from .synth import SynthCorpus, generate_corpus, preset

SUMMARY_FILE = "summary.json"


class DemoError(RuntimeError):
    """The demo cannot run as asked (e.g. its output directory holds something else)."""


@dataclass(frozen=True)
class DemoSettings:
    """Everything that determines a demo run.  The defaults are the README's demo."""

    seed: int = 0
    variance: str = "unequal"
    train_tokens: int = 120_000
    valid_tokens: int = 8_000
    hidden_size: int = 64
    epochs: int = 12
    learning_rate: float = 0.005
    batch_size: int = 20
    num_steps: int = 35
    max_delay: int = 20
    state: str = "hidden"
    block_size: int = 1000
    threads: int = 1
    # Thresholds of the criteria (see the module docstring); measured values and their
    # spread over seeds are in docs/synthetic-validation.md.
    gap_fraction: float = 0.75
    min_accuracy: float = 0.9
    min_hold: float = 4.0
    min_rise: float = 1.4
    rise_min_span: int = 8
    max_fall: float = 0.5
    max_filler: float = 0.15

    def synth_config(self):
        return preset("demo", seed=self.seed, variance=self.variance,
                      train_tokens=self.train_tokens, valid_tokens=self.valid_tokens)

    def train_config(self, data_dir: Path, model_dir: Path) -> TrainConfig:
        synth = self.synth_config()
        return TrainConfig.from_dict({
            "data": {"path": str(data_dir)},
            "model": {"cell": "lstm", "hidden_size": self.hidden_size,
                      "embedding_size": synth.embedding_dim,
                      "pretrained_embeddings": str(data_dir / "embeddings.npz"),
                      # Frozen planted embeddings: their covariance is known exactly, which is
                      # what makes the normalisation's effect checkable.
                      "fixed_embeddings": True, "init_scale": 0.1},
            "training": {"optimizer": "adam", "learning_rate": self.learning_rate,
                         "max_epoch": self.epochs, "max_max_epoch": self.epochs,
                         "batch_size": self.batch_size, "num_steps": self.num_steps,
                         "seed": self.seed + 1, "threads": self.threads},
            "output": {"save_path": str(model_dir)},
        }, source="demo settings")


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
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=1, default=_jsonable) + "\n",
                       encoding="utf-8")
        os.replace(tmp, path)
        return path


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


# --- measures ---------------------------------------------------------------------------------


def trigger_classes(corpus: SynthCorpus) -> dict[str, int]:
    """Trigger class name -> its delay k, shortest first."""
    truth = corpus.metadata["ground_truth"]
    spans = {name: int(t["memory_span"]) for name, t in truth.items() if "target_of" in t}
    return dict(sorted(spans.items(), key=lambda kv: kv[1]))


def class_subspace(embeddings: np.ndarray, word_ids: Sequence[int],
                   whitening: np.ndarray | None = None, *, rtol: float = 1e-6) -> np.ndarray:
    """Orthonormal basis (E, r) of the directions in which the words of a class differ:
    the span of ``x_w - mean`` over the words (of ``Z (x_w - mean)`` with ``whitening`` Z)."""
    X = np.asarray(embeddings, dtype=np.float64)[np.asarray(word_ids, dtype=np.int64)]
    if len(X) < 2:
        raise DemoError("a class needs at least two words to have identity directions")
    dev = X - X.mean(axis=0)
    if whitening is not None:
        dev = dev @ np.asarray(whitening, dtype=np.float64).T
    _, s, vh = np.linalg.svd(dev, full_matrices=False)
    keep = s > rtol * s[0]
    return vh[keep].T


def identity_memory(result: GradientResult, class_name: str, basis: np.ndarray,
                    L: np.ndarray | None = None) -> np.ndarray:
    """Per delay, the sum of the singular values of ``Gbar_{d,c} L P`` (``Gbar_{d,c} P``
    without ``L``): how strongly the state d steps later still depends on which word of
    the class was read.  NaN where the class has no occurrence at that delay."""
    out = np.full(result.max_delay, np.nan)
    c = result.class_index(class_name)
    for i in range(result.max_delay):
        if result.counts[i, c] == 0:
            continue
        G = result.sums[i, c] / result.counts[i, c]
        if L is not None:
            G = G @ L
        out[i] = np.linalg.svd(G @ basis, compute_uv=False).sum()
    return out


@dataclass
class TargetScores:
    """How well a model predicts the planted targets, and its cross-entropy on the text."""

    cross_entropy: float  # nats per predicted token, state carried from the text's start
    accuracy: dict[str, float]  # per trigger class: argmax == intended target at due positions
    target_nll: dict[str, float]  # per trigger class: mean -log p(target) at due positions
    due_positions: dict[str, int]


@torch.no_grad()
def target_scores(model: LanguageModel, corpus: SynthCorpus, tokens: np.ndarray) -> TargetScores:
    """Score ``model`` on ``tokens`` in one pass from the zero state (batch 1)."""
    module = model.module
    module.eval()
    device = next(module.parameters()).device
    inputs = torch.as_tensor(np.asarray(tokens[:-1], dtype=np.int64), device=device)[:, None]
    logits, _ = module(inputs, module.init_state(1, device))
    logp = torch.log_softmax(logits[:, 0].double(), dim=-1).cpu().numpy()
    nxt = np.asarray(tokens[1:], dtype=np.int64)
    nll = -logp[np.arange(len(nxt)), nxt]  # nll[i]: the word at i + 1
    index = {w: i for i, w in enumerate(model.vocab.words)}
    truth = corpus.metadata["ground_truth"]
    acc, tnll, npos = {}, {}, {}
    for name, k in trigger_classes(corpus).items():
        pos_list, want_list = [], []
        for trig, tgt in truth[name]["target_of"].items():
            if trig not in index or tgt not in index:
                continue
            p = np.flatnonzero(tokens == index[trig])
            p = p[p + k < len(tokens)]
            pos_list.append(p + k)
            want_list.append(np.full(len(p), index[tgt]))
        due = np.concatenate(pos_list) if pos_list else np.zeros(0, dtype=np.int64)
        want = np.concatenate(want_list) if want_list else np.zeros(0, dtype=np.int64)
        npos[name] = int(due.size)
        if due.size == 0:
            acc[name], tnll[name] = float("nan"), float("nan")
            continue
        rows = due - 1  # the prediction of the word at `due` is made one step earlier
        acc[name] = float(np.mean(logp[rows].argmax(axis=1) == want))
        tnll[name] = float(np.mean(-logp[rows, want]))
    return TargetScores(float(nll.mean()), acc, tnll, npos)


def measure(result: GradientResult, stats: EmbeddingStats, model: LanguageModel,
            corpus: SynthCorpus, scores: TargetScores) -> dict[str, Any]:
    """Every number the criteria use (curves as lists, per class and raw/normalised)."""
    W = embedding_matrix(model)
    index = {w: i for i, w in enumerate(model.vocab.words)}
    names = [*trigger_classes(corpus), "filler"]
    curves: dict[str, dict[str, list[float]]] = {"normalised": {}, "raw": {}}
    for name in names:
        ids = [index[w] for w in corpus.metadata["classes"][name] if w in index]
        curves["normalised"][name] = identity_memory(
            result, name, class_subspace(W, ids, stats.whitening), stats.cholesky).tolist()
        curves["raw"][name] = identity_memory(result, name, class_subspace(W, ids)).tolist()
    # The method's plain memory curve (all embedding directions), for comparison: it mixes
    # the identity directions with those every word of a class shares.
    full = {variant: {c.class_name: c.totals for c in
                      memory_curves(result, normalize=norm_, classes=names).curves}
            for variant, norm_ in (("normalised", stats), ("raw", None))}
    entropy = corpus.metadata["entropy"]
    ideal = corpus.metadata["empirical"]["valid"]["cross_entropy_nats"]
    forgetting = {k: v - entropy["rate_nats_per_token"]
                  for k, v in entropy["rate_if_values_forgotten"].items()}
    return {
        "identity_memory": curves,
        "memory_curve": full,
        "cross_entropy": scores.cross_entropy,
        "ideal_cross_entropy": ideal,
        "entropy_rate": entropy["rate_nats_per_token"],
        "forgetting_cost": forgetting,
        "target_accuracy": scores.accuracy,
        "target_nll": scores.target_nll,
        "due_positions": scores.due_positions,
        "spans": trigger_classes(corpus),
        "variance": corpus.metadata["config"]["variance"],
    }


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
    return out


# --- the run ----------------------------------------------------------------------------------


def _plot_identity_memory(m: dict[str, Any], fig_dir: Path) -> list[Path]:
    from .report import Curve, plot_curves, save_figure

    curves = []
    for j, variant in enumerate(("normalised", "raw")):
        for i, (name, values) in enumerate(m["identity_memory"][variant].items()):
            y = np.asarray(values, dtype=np.float64)
            curves.append(Curve(f"{name} ({variant})", np.arange(len(y)), y, color=i, style=j))
    fig = plot_curves(curves, ylabel="identity memory", log_scale=True,
                        title="Identity memory of the ground-truth classes")
    files = save_figure(fig, fig_dir / "identity_memory")
    rows = ["delay," + ",".join(c.label for c in curves)]
    for d in range(len(curves[0].y)):
        rows.append(f"{d}," + ",".join(f"{c.y[d]:.6g}" for c in curves))
    csv_path = fig_dir / "identity_memory.csv"
    csv_path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return [*files, csv_path]


def run_demo(out_dir: str | os.PathLike = "demo-output", settings: DemoSettings | None = None,
             *, echo: Callable[[str], None] | None = print, overwrite: bool = True,
             report: bool = True) -> DemoSummary:
    """Corpus -> model -> state gradients -> analysis -> report, and the ground-truth checks.

    Writes ``data/`` (corpus, ``synth.json``, ``embeddings.npz``), ``model/`` (training
    run), ``model.pt``, ``gradients.h5``, ``stats.npz``, ``report/`` and ``summary.json``
    into ``out_dir``.  Deterministic for given settings and thread count."""
    from .lm import train

    settings = settings or DemoSettings()
    say = echo or (lambda _msg: None)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise DemoError(f"{out} exists and is not a directory; choose another --out")
    if out.is_dir() and any(out.iterdir()) and not (out / SUMMARY_FILE).exists() \
            and not (out / "data" / "synth.json").exists():
        raise DemoError(f"{out} is not empty and does not hold an earlier demo; "
                        "choose an empty or new directory with --out")
    out.mkdir(parents=True, exist_ok=True)
    if settings.threads:
        torch.set_num_threads(settings.threads)
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()

    def stage(name: str, started: float) -> None:
        seconds[name] = round(time.perf_counter() - started, 2)

    # 1. corpus
    started = time.perf_counter()
    say(f"[1/5] generating the synthetic corpus in {out / 'data'} ...")
    corpus = generate_corpus(settings.synth_config(), out / "data", overwrite=overwrite)
    ent = corpus.metadata["entropy"]
    spans = trigger_classes(corpus)
    say(f"      {corpus.metadata['splits']['train']['tokens']:,} training tokens; triggers fix "
        f"the word {' and '.join(str(k) for k in spans.values())} steps later; entropy rate "
        f"{ent['rate_nats_per_token']:.4f} nats/token (perplexity {ent['perplexity']:.2f})")
    stage("corpus", started)

    # 2. model
    started = time.perf_counter()
    say(f"[2/5] training a {settings.hidden_size}-unit LSTM for {settings.epochs} epochs "
        "(frozen planted embeddings) ...")
    config = settings.train_config(out / "data", out / "model")
    summary = train(config, overwrite=True, progress=False,
                    echo=lambda msg: say("      " + msg) if msg.startswith("epoch") else None)
    best = summary.best_checkpoint or summary.last_checkpoint
    if best is None:
        raise DemoError("training wrote no checkpoint")
    model_path = out / "model.pt"
    model_path.write_bytes(Path(best).read_bytes())
    from .lm import load_trained

    model = load_trained(model_path)
    stage("train", started)

    # 3. gradients
    started = time.perf_counter()
    valid = read_tokens(corpus.path("valid"), model.vocab)
    say(f"[3/5] state gradients of the {settings.state} state on the validation text "
        f"({len(valid):,} tokens, delays 0..{settings.max_delay - 1}) ...")
    classes = corpus.class_set(model.vocab)
    result = compute_state_gradients(model, valid, max_delay=settings.max_delay,
                                     state=settings.state, classes=classes,
                                     block_size=settings.block_size, progress=False,
                                     text_info={"path": str(corpus.path("valid"))})
    result.save(out / "gradients.h5")
    stage("gradients", started)

    # 4. analysis
    started = time.perf_counter()
    say("[4/5] embedding statistics and memory analysis ...")
    stats = embedding_stats_for_model(model, corpus.path("train"))
    stats.save(out / "stats.npz")
    scores = target_scores(model, corpus, valid)
    m = measure(result, stats, model, corpus, scores)
    spans_report = memory_curves(result, normalize=stats)
    m["memory_span_full"] = {c.class_name: c.span.format() for c in spans_report.curves}
    criteria = evaluate_criteria(m, settings)
    stage("analysis", started)

    # 5. report
    started = time.perf_counter()
    extra: list[Path] = []
    if report:
        say("[5/5] writing the report ...")
        from .report import ExtraFigure, build_report

        extra = _plot_identity_memory(m, out / "figures")
        identity = ExtraFigure(
            out / "figures" / "identity_memory.png", "Identity memory of the planted classes",
            "Memory of the directions that tell the words of a class apart (whitened: "
            "normalised; plain embedding directions: raw), against delay. The ground truth: "
            "a trigger's identity is needed up to its delay k - 1 and not after; fillers are "
            "never needed.", out / "figures" / "identity_memory.csv")
        order = [*spans, "filler", "target"]
        build_report([result], out / "report", labels=["demo LSTM"],
                     sources=[str(out / "gradients.h5")], normalize=stats,
                     normalisation_source=f"{out / 'stats.npz'} ({stats.describe()['text']})",
                     classes=order, log_scale=True,
                     extra_figures=[identity],
                     title="stategrad demo: a synthetic language with memory spans "
                           + " and ".join(str(k) for k in spans.values()))
    stage("report", started)
    seconds["total"] = round(time.perf_counter() - t0, 2)
    result_summary = DemoSummary(out, settings, criteria, m, seconds)
    result_summary.measures["figures"] = [str(p) for p in extra]
    result_summary.save()
    return result_summary


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
