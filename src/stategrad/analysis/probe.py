"""A POS probe: how much part-of-speech information a model's embeddings hold.

A multinomial logistic regression (scikit-learn) predicts a word's tag from its
embedding.  Examples come either from word types (one example per (word, tag)
pair of a word -> tags map, as the original's ``pos_classifier_sklearn.py``
built them, so a word with two tags gives two examples with the same embedding)
or from running tagged text (one example per token; identical (word, tag)
tokens are collapsed into one example with a weight, which gives the same fit
as repeating it and keeps the probe fast).

Accuracy is measured on *held-out words*: the words are split, never the
examples, so no test embedding was seen in training.  The regularisation
strength C is chosen by cross-validation on the training words (``GridSearchCV``
with folds that also keep each word's examples together).  The per-tag mean
embeddings the probe reports are the usual source of the difference vectors of
:func:`stategrad.analysis.relative_memory`.
"""

from __future__ import annotations

import collections
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .embeddings import embedding_matrix
from .errors import AnalysisError


class ProbeError(AnalysisError):
    """A probe that cannot be trained as asked."""


@dataclass
class ProbeData:
    """Examples for the probe: ``X`` (n, E), string labels ``y``, the word id of each
    example (``groups``: the unit of the train/test split) and its weight (how many
    tokens it stands for; 1 for word types)."""

    X: np.ndarray
    y: np.ndarray
    groups: np.ndarray
    weights: np.ndarray
    mode: str
    skipped: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.y)


def _vocab_words(vocab: Any) -> list[str]:
    return list(getattr(vocab, "words", vocab))


def _keep(tag: str, tags: set[str] | None, tag_map: Mapping[str, str] | None) -> str | None:
    if tag_map is not None:
        tag = tag_map.get(tag)
        if tag is None:
            return None
    if tags is not None and tag not in tags:
        return None
    return tag


def type_examples(
    embeddings: np.ndarray,
    vocab: Any,
    word_tags: Mapping[str, Iterable[str]],
    *,
    tags: Iterable[str] | None = None,
    tag_map: Mapping[str, str] | None = None,
) -> ProbeData:
    """One example per (word, tag) pair, for the words of ``vocab`` in ``word_tags``.

    ``tags`` keeps only those tags (after ``tag_map``, e.g. fine PTB tags to the
    universal ones); a word whose tags all fall away gives no example."""
    words = _vocab_words(vocab)
    index = {w: i for i, w in enumerate(words)}
    wanted = set(tags) if tags is not None else None
    W = np.asarray(embeddings)
    rows, labels, groups = [], [], []
    not_in_vocab = 0
    for word, wtags in word_tags.items():
        i = index.get(word)
        if i is None:
            not_in_vocab += 1
            continue
        kept = dict.fromkeys(t for t in (_keep(t, wanted, tag_map) for t in wtags) if t)
        for tag in kept:
            rows.append(i)
            labels.append(tag)
            groups.append(i)
    if not rows:
        raise ProbeError("no (word, tag) example: no word of the POS map is in the model's "
                         "vocabulary with a wanted tag")
    rows_arr = np.asarray(rows)
    return ProbeData(W[rows_arr].astype(np.float64), np.asarray(labels), np.asarray(groups),
                     np.ones(len(rows)), "types", {"map words not in vocabulary": not_in_vocab})


def text_examples(
    embeddings: np.ndarray,
    vocab: Any,
    tagged_tokens: Iterable[tuple[str, str]],
    *,
    tags: Iterable[str] | None = None,
    tag_map: Mapping[str, str] | None = None,
) -> ProbeData:
    """One example per token of a tagged text, ``(word, tag)`` pairs; repeated pairs
    become one weighted example.  Tokens whose word is not in ``vocab`` are skipped
    (their ``<unk>`` embedding says nothing about the word) and counted."""
    words = _vocab_words(vocab)
    index = {w: i for i, w in enumerate(words)}
    wanted = set(tags) if tags is not None else None
    counts: collections.Counter = collections.Counter()
    oov = dropped = 0
    for word, tag in tagged_tokens:
        i = index.get(word)
        if i is None:
            oov += 1
            continue
        kept = _keep(tag, wanted, tag_map)
        if kept is None:
            dropped += 1
            continue
        counts[(i, kept)] += 1
    if not counts:
        raise ProbeError("no token of the tagged text is in the model's vocabulary with a "
                         "wanted tag (does the text need the same normalisation as the "
                         "training text?)")
    pairs = sorted(counts)
    ids = np.asarray([p[0] for p in pairs])
    W = np.asarray(embeddings)
    return ProbeData(W[ids].astype(np.float64), np.asarray([p[1] for p in pairs]), ids,
                     np.asarray([counts[p] for p in pairs], dtype=np.float64), "text",
                     {"tokens not in vocabulary": oov, "tokens with other tags": dropped})


@dataclass
class ProbeResult:
    labels: list[str]
    accuracy: float  # on held-out words (token weighted for running text)
    majority_accuracy: float  # predicting the most frequent training tag: the floor
    cv_accuracy: float  # best mean cross-validation accuracy on the training words
    best_C: float
    confusion: np.ndarray  # (L, L): rows true tag, columns predicted (weights summed)
    n_train: int  # examples
    n_test: int
    n_train_words: int
    n_test_words: int
    class_means: dict[str, np.ndarray]  # tag -> mean embedding over all its examples
    class_weights: dict[str, float]  # examples (or tokens) behind each mean
    dropped_tags: dict[str, int]  # tags with too few examples, left out
    mode: str
    skipped: dict[str, int]
    classifier: Any = field(repr=False, default=None)
    n_train_tokens: float | None = None  # running text: tokens behind the training examples
    n_test_tokens: float | None = None
    pair_accuracy: float | None = None  # running text: unweighted, over held-out (word, tag) pairs
    #: With several random word splits: the held-out accuracy and majority floor of each
    #: (this result's other fields are those of the first split).
    split_accuracies: list[float] = field(default_factory=list)
    split_majorities: list[float] = field(default_factory=list)

    def format(self) -> str:
        if self.mode == "text" and self.n_test_tokens is not None:
            # Running text: an example is a distinct (word, tag) pair weighted by its tokens,
            # so the counts of examples and the token-weighted accuracy are told apart.
            lines = [
                f"POS probe (text): {len(self.labels)} tags; training: {self.n_train} (word, tag) "
                f"pairs of {self.n_train_words} words, {self.n_train_tokens:,.0f} tokens; "
                f"held out: {self.n_test} pairs of {self.n_test_words} words, "
                f"{self.n_test_tokens:,.0f} tokens",
                f"best C {self.best_C:g} (cross-validated accuracy over training pairs "
                f"{self.cv_accuracy:.4f})",
                f"held-out accuracy per token {self.accuracy:.4f}  (majority tag: "
                f"{self.majority_accuracy:.4f})"
                + (f"; per (word, tag) pair {self.pair_accuracy:.4f}"
                   if self.pair_accuracy is not None else ""),
            ]
        else:
            lines = [
                f"POS probe ({self.mode}): {len(self.labels)} tags, {self.n_train} training "
                f"examples ({self.n_train_words} words), {self.n_test} test examples "
                f"({self.n_test_words} held-out words)",
                f"best C {self.best_C:g} (cross-validated accuracy {self.cv_accuracy:.4f})",
                f"held-out accuracy {self.accuracy:.4f}  (majority tag: "
                f"{self.majority_accuracy:.4f})",
            ]
        if len(self.split_accuracies) > 1:
            acc = np.asarray(self.split_accuracies)
            maj = np.asarray(self.split_majorities)
            lines.append(
                f"over {len(acc)} random word splits: accuracy mean {acc.mean():.4f}, sd "
                f"{acc.std(ddof=1):.4f}, range {acc.min():.4f}-{acc.max():.4f} (majority tag "
                f"mean {maj.mean():.4f})")
        for what, n in self.skipped.items():
            if n:
                lines.append(f"skipped: {n} {what}")
        if self.dropped_tags:
            unit = "(word, tag) pairs" if self.mode == "text" else "examples"
            lines.append(f"left out (too few {unit}): " + ", ".join(
                f"{t} ({n})" for t, n in sorted(self.dropped_tags.items())))
        return "\n".join(lines)

    def confusion_rows(self) -> list[dict[str, Any]]:
        return [{"true": t, **{p: float(self.confusion[i, j]) for j, p in enumerate(self.labels)}}
                for i, t in enumerate(self.labels)]

    def save_confusion_csv(self, path: str | os.PathLike) -> Path:
        import csv

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["true\\predicted"] + self.labels)
            for i, t in enumerate(self.labels):
                writer.writerow([t] + [f"{x:g}" for x in self.confusion[i]])
        return path

    def save_class_means(self, path: str | os.PathLike) -> Path:
        """All per-tag mean embeddings in one ``.npz`` (key = tag)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, **self.class_means)
        return path

    def save_class_means_legacy(self, prefix: str | os.PathLike) -> list[Path]:
        """One ``<prefix>_avg_<TAG>.npy`` per tag, as the original's ``--avg_emb``."""
        out = []
        for tag, v in self.class_means.items():
            p = Path(f"{prefix}_avg_{tag}.npy")
            p.parent.mkdir(parents=True, exist_ok=True)
            np.save(p, v)
            out.append(p)
        return out


def class_means(data: ProbeData) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Weighted mean embedding of each label's examples."""
    means, weights = {}, {}
    for tag in sorted(set(data.y.tolist())):
        sel = data.y == tag
        w = data.weights[sel]
        means[tag] = w @ data.X[sel] / w.sum()
        weights[tag] = float(w.sum())
    return means, weights


def train_probe(
    data: ProbeData,
    *,
    Cs: Sequence[float] = (0.1, 1.0, 10.0),
    cv: int = 3,
    test_fraction: float = 0.2,
    min_examples: int = 5,
    seed: int = 0,
    max_iter: int = 500,
    n_jobs: int = 1,
) -> ProbeResult:
    """Fit the probe on ``1 - test_fraction`` of the words, choose C among ``Cs`` by
    ``cv``-fold cross-validation (folds by word), and measure on the held-out words.

    Tags with fewer than ``min_examples`` examples are left out (reported in
    ``dropped_tags``), as the original's ``--freq_cutoff``.  Cross-validation
    scores are unweighted accuracies over the (collapsed) examples; the held-out
    accuracy and confusion matrix are weighted by tokens in running-text mode.  The
    cross-validation fits run in ``n_jobs`` processes."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import confusion_matrix
    from sklearn.model_selection import GridSearchCV, GroupKFold, GroupShuffleSplit
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    _check_options(Cs, cv, test_fraction)
    (X, y, g, w), dropped = _frequent_tags(data, min_examples)
    labels = sorted(set(y.tolist()))
    n_words = len(np.unique(g))
    if n_words < cv + 2:
        raise ProbeError(f"only {n_words} distinct words: too few to split into training, "
                         f"{cv} cross-validation folds and held-out words")

    splitter = GroupShuffleSplit(n_splits=1, test_size=test_fraction, random_state=seed)
    train, test = next(splitter.split(X, y, groups=g))
    if len(np.unique(y[train])) < 2:
        raise ProbeError("the training words hold only one tag; use more words or another seed")

    pipeline = make_pipeline(StandardScaler(), LogisticRegression(max_iter=max_iter))
    search = GridSearchCV(pipeline, {"logisticregression__C": list(Cs)},
                          cv=GroupKFold(n_splits=cv), n_jobs=n_jobs, error_score="raise")
    # Warnings about a fold lacking a tag are expected with folds by word; the
    # folds still rank the C values.
    import warnings

    from threadpoolctl import threadpool_limits

    # One BLAS thread: the matrices are small (E features), and a multi-threaded BLAS on a
    # busy machine made each fit ~20 times slower; parallelism is over splits instead.
    with warnings.catch_warnings(), threadpool_limits(limits=1):
        warnings.simplefilter("ignore", UserWarning)
        search.fit(X[train], y[train], groups=g[train],
                   logisticregression__sample_weight=w[train])
    best = search.best_estimator_
    pred = best.predict(X[test])
    wt = w[test]
    accuracy = float(wt[pred == y[test]].sum() / wt.sum())
    majority_accuracy = _majority_accuracy(y[train], w[train], y[test], wt)
    confusion = confusion_matrix(y[test], pred, labels=labels, sample_weight=wt)
    means, weights = class_means(ProbeData(X, y, g, w, data.mode))
    return ProbeResult(
        labels=labels, accuracy=accuracy, majority_accuracy=majority_accuracy,
        cv_accuracy=float(search.best_score_), best_C=float(search.best_params_[
            "logisticregression__C"]),
        confusion=np.asarray(confusion, dtype=np.float64), n_train=len(train), n_test=len(test),
        n_train_words=len(np.unique(g[train])), n_test_words=len(np.unique(g[test])),
        class_means=means, class_weights=weights, dropped_tags=dropped, mode=data.mode,
        skipped=dict(data.skipped), classifier=best,
        n_train_tokens=float(w[train].sum()), n_test_tokens=float(wt.sum()),
        pair_accuracy=float((pred == y[test]).mean()),
    )


def _check_options(Cs: Sequence[float], cv: int, test_fraction: float) -> None:
    if not 0 < test_fraction < 1:
        raise ProbeError(f"test_fraction must lie strictly between 0 and 1, got {test_fraction}")
    if cv < 2:
        raise ProbeError(f"cv must be at least 2, got {cv}")
    if not Cs or any(c <= 0 for c in Cs):
        raise ProbeError(f"the C grid must hold positive values, got {list(Cs)}")


def _frequent_tags(data: ProbeData, min_examples: int) -> tuple[tuple[np.ndarray, ...],
                                                                 dict[str, int]]:
    """(X, y, groups, weights) of the tags with at least ``min_examples`` examples, and
    the tags left out with their counts; an error unless two tags are left."""
    freq = collections.Counter(data.y.tolist())
    dropped = {t: n for t, n in freq.items() if n < min_examples}
    keep = ~np.isin(data.y, list(dropped)) if dropped else np.ones(len(data), dtype=bool)
    arrays = data.X[keep], data.y[keep], data.groups[keep], data.weights[keep]
    labels = sorted(set(arrays[1].tolist()))
    if len(labels) < 2:
        raise ProbeError(
            f"need at least two tags with {min_examples}+ examples; have {labels} "
            f"(left out: {dropped}); lower min_examples or use more words"
        )
    return arrays, dropped


def _majority_accuracy(y_train: np.ndarray, w_train: np.ndarray, y_test: np.ndarray,
                       w_test: np.ndarray) -> float:
    """Held-out accuracy of always guessing the (weighted) most frequent training tag."""
    tr_freq: collections.Counter = collections.Counter()
    for tag, weight in zip(y_train.tolist(), w_train.tolist(), strict=True):
        tr_freq[tag] += weight
    majority = tr_freq.most_common(1)[0][0]
    return float(w_test[y_test == majority].sum() / w_test.sum())


def repeated_probe(data: ProbeData, splits: int, *, seed: int = 0, n_jobs: int | None = None,
                   progress: bool = False, **kwargs: Any) -> ProbeResult:
    """:func:`train_probe` on ``splits`` random word splits (seeds ``seed``, ``seed + 1``,
    ...).  On running text a few frequent held-out words carry much of the token-weighted
    accuracy (one number token can be a fifth of the held-out tokens), so one split can
    be far from the typical; the spread over splits shows it.  Returns the first split's
    result with ``split_accuracies`` and ``split_majorities`` of all of them.

    The splits run in ``n_jobs`` processes (default: one per CPU; 1 runs them here), or
    with one split its cross-validation fits do; each fit is single-threaded, and the
    results do not depend on ``n_jobs``.  ``progress`` shows a progress bar over the splits on standard error."""
    if splits < 1:
        raise ProbeError(f"splits must be at least 1, got {splits}")
    if n_jobs is None:
        n_jobs = os.cpu_count() or 1
    if n_jobs < 1:
        raise ProbeError(f"n_jobs must be at least 1, got {n_jobs}")
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=splits, desc="probe", unit="split", file=sys.stderr)
    try:
        if n_jobs == 1 or splits == 1:
            results = []
            for i in range(splits):
                # One split: its cross-validation fits in parallel instead.
                results.append(train_probe(data, seed=seed + i, n_jobs=n_jobs, **kwargs))
                if bar is not None:
                    bar.update()
        else:
            from joblib import Parallel, delayed

            results = []
            jobs = Parallel(n_jobs=min(n_jobs, splits), return_as="generator")(
                delayed(train_probe)(data, seed=seed + i, **kwargs) for i in range(splits))
            for r in jobs:
                results.append(r)
                if bar is not None:
                    bar.update()
    finally:
        if bar is not None:
            bar.close()
    first = results[0]
    first.split_accuracies = [r.accuracy for r in results]
    first.split_majorities = [r.majority_accuracy for r in results]
    return first


def pos_probe(
    model: Any,
    *,
    pos_map: Mapping[str, Iterable[str]] | None = None,
    tagged_tokens: Iterable[tuple[str, str]] | None = None,
    tags: Iterable[str] | None = None,
    tag_map: Mapping[str, str] | None = None,
    splits: int = 1,
    **train_kwargs: Any,
) -> ProbeResult:
    """Probe a :class:`~stategrad.lm.LanguageModel`'s input embeddings: from word
    types (``pos_map``) or from running text (``tagged_tokens``), on ``splits`` random
    word splits (see :func:`repeated_probe`)."""
    if (pos_map is None) == (tagged_tokens is None):
        raise ProbeError("give either a POS map (word types) or a tagged text (running text)")
    W = embedding_matrix(model)
    if pos_map is not None:
        data = type_examples(W, model.vocab, pos_map, tags=tags, tag_map=tag_map)
    else:
        data = text_examples(W, model.vocab, tagged_tokens, tags=tags, tag_map=tag_map)
    return repeated_probe(data, splits, **train_kwargs)


def read_tag_map(path: str | os.PathLike) -> dict[str, str]:
    """A fine -> coarse tag mapping, two columns per line (e.g. ``en-ptb.map`` to the
    universal tags)."""
    path = Path(path)
    if not path.is_file():
        raise ProbeError(f"tag map not found: {path}")
    mapping = {}
    with open(path, encoding="utf-8") as handle:
        for lineno, line in enumerate(handle, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 2:
                raise ProbeError(f"{path}:{lineno}: expected 'FINE<TAB>COARSE', got {line.rstrip()!r}")
            mapping[parts[0]] = parts[1]
    return mapping


__all__ = ["ProbeData", "ProbeError", "ProbeResult", "class_means", "pos_probe", "read_tag_map",
           "repeated_probe", "text_examples", "train_probe", "type_examples"]
