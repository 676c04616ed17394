"""The one-command demo: corpus -> model -> state gradients -> analysis -> report, and the
ground-truth checks of :mod:`.criteria`, one named stage after the other."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..analysis import embedding_matrix, embedding_stats_for_model, memory_curves
from ..data import read_tokens
from ..gradients import GradientResult, compute_state_gradients
from ..synth import SynthCorpus, generate_corpus
from .criteria import DemoSummary, evaluate_criteria
from .measures import (
    identity_noise,
    measure,
    property_memory,
    target_scores,
    trigger_classes,
)
from .settings import SUMMARY_FILE, DemoError, DemoSettings


def _plot_identity_memory(m: dict[str, Any], fig_dir: Path) -> list[Path]:
    from ..report import Curve, plot_curves, save_figure

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


def _plot_property_memory(m: dict[str, Any], fig_dir: Path) -> list[Path]:
    """|Gbar_d L n| / |Gbar_0 L n| of each planted property, per state, and its CSV."""
    from ..report import Curve, plot_curves, save_figure

    curves = []
    for j, (state, props) in enumerate(m["property_memory"].items()):
        for i, (name, p) in enumerate(props.items()):
            y = np.asarray(p["curves"]["absolute_ratio"], dtype=np.float64)
            curves.append(Curve(f"{name} (K={p['distance']}, {state})", np.arange(len(y)), y,
                                color=i, style=j))
    fig = plot_curves(curves, ylabel="property kept (ratio to delay 0)", log_scale=True,
                      title="Property memory of the planted properties")
    files = save_figure(fig, fig_dir / "property_memory")
    rows = ["delay," + ",".join(c.label.replace(",", ";") for c in curves)]
    for d in range(len(curves[0].y)):
        rows.append(f"{d}," + ",".join(f"{c.y[d]:.6g}" for c in curves))
    csv_path = fig_dir / "property_memory.csv"
    csv_path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return [*files, csv_path]


class _Stages:
    """Times each stage (seconds per stage name, for the summary) and says what it does."""

    def __init__(self, echo: Callable[[str], None] | None):
        self.say = echo or (lambda _msg: None)
        self.seconds: dict[str, float] = {}
        self.t0 = time.perf_counter()
        self._started = self.t0

    def start(self) -> None:
        self._started = time.perf_counter()

    def done(self, name: str) -> None:
        self.seconds[name] = round(time.perf_counter() - self._started, 2)

    def total(self) -> dict[str, float]:
        self.seconds["total"] = round(time.perf_counter() - self.t0, 2)
        return self.seconds


def run_demo(out_dir: str | os.PathLike = "demo-output", settings: DemoSettings | None = None,
             *, echo: Callable[[str], None] | None = print, overwrite: bool = True,
             report: bool = True) -> DemoSummary:
    """Corpus -> model -> state gradients -> analysis -> report, and the ground-truth checks.

    Writes ``data/`` (corpus, ``synth.json``, ``embeddings.npz``), ``model/`` (training
    run), ``model.pt``, ``gradients.h5``, ``stats.npz``, ``report/`` and ``summary.json``
    into ``out_dir``.  Deterministic for given settings and thread count."""
    settings = settings or DemoSettings()
    out = _output_dir(out_dir)
    if settings.threads:
        torch.set_num_threads(settings.threads)
    stages = _Stages(echo)
    corpus = _corpus_stage(out, settings, stages, overwrite)
    model = _train_stage(out, settings, stages)
    valid, results = _gradients_stage(out, settings, stages, corpus, model)
    result = results[settings.state]
    m, criteria, stats = _analysis_stage(out, settings, stages, corpus, model, valid, results)
    stages.start()
    extra: list[Path] = []
    if report:
        extra = _report_stage(out, stages, corpus, result, m, stats, model)
    stages.done("report")
    summary = DemoSummary(out, settings, criteria, m, stages.total())
    summary.measures["figures"] = [str(p) for p in extra]
    summary.save()
    return summary


def _output_dir(out_dir: str | os.PathLike) -> Path:
    """The output folder, made; an error when it holds something other than a demo."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise DemoError(f"{out} exists and is not a directory; choose another --out")
    if out.is_dir() and any(out.iterdir()) and not (out / SUMMARY_FILE).exists() \
            and not (out / "data" / "synth.json").exists():
        raise DemoError(f"{out} is not empty and does not hold an earlier demo; "
                        "choose an empty or new directory with --out")
    out.mkdir(parents=True, exist_ok=True)
    return out


def _corpus_stage(out: Path, settings: DemoSettings, stages: _Stages,
                  overwrite: bool) -> SynthCorpus:
    stages.start()
    say = stages.say
    say(f"[1/5] generating the synthetic corpus in {out / 'data'} ...")
    corpus = generate_corpus(settings.synth_config(), out / "data", overwrite=overwrite)
    ent = corpus.metadata["entropy"]
    spans = trigger_classes(corpus)
    say(f"      {corpus.metadata['splits']['train']['tokens']:,} training tokens; triggers fix "
        f"the word {' and '.join(str(k) for k in spans.values())} steps later; entropy rate "
        f"{ent['rate_nats_per_token']:.4f} nats/token (perplexity {ent['perplexity']:.2f})")
    stages.done("corpus")
    return corpus


def _train_stage(out: Path, settings: DemoSettings, stages: _Stages):
    from ..lm import load_trained, train

    stages.start()
    say = stages.say
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
    model = load_trained(model_path)
    stages.done("train")
    return model


def _gradients_stage(out: Path, settings: DemoSettings, stages: _Stages, corpus: SynthCorpus,
                     model) -> tuple[np.ndarray, dict[str, GradientResult]]:
    """The gradients of ``settings.state`` (``gradients.h5``) and of every other state the
    property criteria read (``gradients-<state>.h5``)."""
    stages.start()
    valid = read_tokens(corpus.path("valid"), model.vocab)
    states = list(dict.fromkeys([settings.state, *settings.property_states]))
    stages.say(f"[3/5] state gradients of the {' and '.join(states)} state on the validation "
               f"text ({len(valid):,} tokens, delays 0..{settings.max_delay - 1}) ...")
    classes = corpus.class_set(model.vocab)
    results = {}
    for state in states:
        results[state] = compute_state_gradients(
            model, valid, max_delay=settings.max_delay, state=state, classes=classes,
            block_size=settings.block_size, progress=False,
            text_info={"path": str(corpus.path("valid"))})
        name = "gradients.h5" if state == settings.state else f"gradients-{state}.h5"
        results[state].save(out / name)
    stages.done("gradients")
    return valid, results


def _analysis_stage(out: Path, settings: DemoSettings, stages: _Stages, corpus: SynthCorpus,
                    model, valid: np.ndarray, results: dict[str, GradientResult]):
    stages.start()
    stages.say("[4/5] embedding statistics and memory analysis ...")
    result = results[settings.state]
    stats = embedding_stats_for_model(model, corpus.path("train"))
    stats.save(out / "stats.npz")
    scores = target_scores(model, corpus, valid)
    m = measure(result, stats, model, corpus, scores)
    m["property_memory"] = {state: property_memory(results[state], stats, model, corpus)
                            for state in settings.property_states}
    m["identity_noise"] = identity_noise(result, stats, model, corpus)
    spans_report = memory_curves(result, normalize=stats)
    m["memory_span_full"] = {c.class_name: c.span.format() for c in spans_report.curves}
    criteria = evaluate_criteria(m, settings)
    stages.done("analysis")
    return m, criteria, stats


def _report_stage(out: Path, stages: _Stages, corpus: SynthCorpus, result: GradientResult,
                  m: dict[str, Any], stats, model) -> list[Path]:
    """The identity-memory figure and the HTML report (which carries that figure too)."""
    from ..report import ExtraFigure, build_report

    stages.say("[5/5] writing the report ...")
    extra = _plot_identity_memory(m, out / "figures")
    identity = ExtraFigure(
        out / "figures" / "identity_memory.png", "Identity memory of the planted classes",
        "Memory of the directions that tell the words of a class apart (whitened: "
        "normalised; plain embedding directions: raw), against delay. The ground truth: "
        "a trigger's identity is needed up to its delay k - 1 and not after; fillers are "
        "never needed.", out / "figures" / "identity_memory.csv")
    figures = [identity]
    if m.get("property_memory"):
        extra += _plot_property_memory(m, out / "figures")
        figures.insert(0, ExtraFigure(
            out / "figures" / "property_memory.png", "Property memory of the planted properties",
            "|Gbar_d L n| / |Gbar_0 L n| against delay, n the whitened direction between a "
            "property's two values (carriers _v1 minus _v0), on the gradients of its carriers; "
            "solid: hidden state, dashed: cell state. The ground truth: the value must be kept "
            "until the agreeing word K steps later; the largest fall should be at K.",
            out / "figures" / "property_memory.csv", lead=True))
    spans = trigger_classes(corpus)
    order = [*spans, "filler", "target"]
    W = embedding_matrix(model)
    index = {w: i for i, w in enumerate(model.vocab.words)}
    class_words = {name: [index[w] for w in corpus.metadata["classes"][name] if w in index]
                   for name in [*spans, "filler"]}
    build_report([result], out / "report", labels=["demo LSTM"],
                 sources=[str(out / "gradients.h5")], normalize=stats,
                 normalisation_source=f"{out / 'stats.npz'} ({stats.describe()['text']})",
                 classes=order, log_scale=True, identity=(W, class_words),
                 extra_figures=figures,
                 title="stategrad demo: a synthetic language with memory spans "
                       + " and ".join(str(k) for k in spans.values()))
    return extra
