"""The numbers the demo's criteria read: identity memory of the ground-truth classes,
the model's scores on the planted targets, and the plain memory curves."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .. import analysis
from ..analysis import (
    EmbeddingStats,
    class_difference_vector,
    class_subspace,
    embedding_matrix,
    identity_floor,
    identity_memory,
    largest_bend,
    memory_curves,
    noise_from,
)
from ..gradients import GradientResult
from ..lm import LanguageModel
from ..synth import SynthCorpus


def trigger_classes(corpus: SynthCorpus) -> dict[str, int]:
    """Trigger class name -> its delay k, shortest first (classes remembered by identity)."""
    truth = corpus.metadata["ground_truth"]
    spans = {name: int(t["memory_span"]) for name, t in truth.items()
             if "target_of" in t and t.get("remembered") == "identity"}
    return dict(sorted(spans.items(), key=lambda kv: kv[1]))


def property_classes(corpus: SynthCorpus) -> dict[str, int]:
    """Carrier class of each planted property -> its distance K, shortest first."""
    truth = corpus.metadata["ground_truth"]
    spans = {name: int(t["distance"]) for name, t in truth.items() if "value_classes" in t}
    return dict(sorted(spans.items(), key=lambda kv: kv[1]))


def property_memory(result: GradientResult, stats: EmbeddingStats, model: LanguageModel,
                    corpus: SynthCorpus) -> dict[str, dict[str, Any]]:
    """Per property: the curves of relative-memory's measures for the direction
    ``n`` of its value classes (``_v1 - _v0``), on its carriers' gradients, and where each
    stops being kept (the delay of its largest bend down, from values above noise)."""
    W = embedding_matrix(model)
    classes = corpus.class_set(model.vocab)
    out = {}
    for name, k in property_classes(corpus).items():
        v = class_difference_vector(W, classes, f"{name}_v1", f"{name}_v0")
        table = analysis.relative_memory(result, v, stats, c=name)
        curves = {key: table.curve(key).tolist() for key in
                  ("absolute", "absolute_ratio", "relative", "cosine", "relative_null",
                   "absolute_floor")}
        falls = {key: table.largest_fall(key) for key in ("absolute", "relative", "cosine")}
        out[name] = {"distance": k, "curves": curves, "fall": falls}
    return out


def identity_noise(result: GradientResult, stats: EmbeddingStats, model: LanguageModel,
                   corpus: SynthCorpus, n_flips: int = 200) -> dict[str, dict[str, Any]]:
    """Per trigger class and the fillers: the noise floor of the normalised identity memory
    (:func:`~stategrad.analysis.identity_floor`, simultaneous over delays 1..D-1), whether
    each delay is above it, and ``noise_from``, the first delay from which the curve stays
    within it (None: above it to the last delay)."""
    W = embedding_matrix(model)
    index = {w: i for i, w in enumerate(model.vocab.words)}
    out = {}
    for name in [*trigger_classes(corpus), "filler"]:
        ids = [index[w] for w in corpus.metadata["classes"][name] if w in index]
        basis = class_subspace(W, ids, stats.whitening)
        nf = identity_floor(result, name, basis, stats.cholesky, n_flips=n_flips)
        above = [None if not np.isfinite(f) else bool(a)
                 for f, a in zip(nf.floor[:, 0, 0], nf.above[:, 0, 0], strict=True)]
        out[name] = {"floor": nf.floor[:, 0, 0].tolist(), "estimate": nf.estimate[:, 0, 0].tolist(),
                     "p_value": nf.p_value[:, 0, 0].tolist(), "above": above,
                     "noise_from": noise_from(above)}
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
    for name, k in {**trigger_classes(corpus), **property_classes(corpus)}.items():
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
                  for k, v in entropy["rate_if_values_forgotten"].items()
                  if k in trigger_classes(corpus)}
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
        "identity_fall": {name: largest_bend(curves["normalised"][name]) for name in names},
        "properties": property_classes(corpus),
        "variance": corpus.metadata["config"]["variance"],
    }
