"""A synthetic language whose memory is known in advance.

Why: state gradients claim to show *what* a language model remembers and for *how long*.
Before trusting their pictures of real models, one wants a text where the right answer is
known.  This module generates such text, states its ground truth, and computes the exact
entropy rate an ideal model would reach.

The language
------------
Sentences are made of four kinds of words, from disjoint word sets:

* **fillers** ``fill0 .. fill{F-1}``: drawn i.i.d. from a Zipf distribution
  (``P(fill_i) ∝ (i+1)^-s``).  Nothing later depends on which filler was used.
* **triggers** of each trigger class c (``{name}_trig{i}``): a trigger of class c at
  position p fixes the word at position p + k_c (its *delay*).
* **targets** of class c (``{name}_tgt{j}``): the word at p + k_c is the target that
  the trigger's remembered *property* selects: its identity (one target per trigger),
  a feature (trigger i has value i mod n_values, one target per value), or only its
  class (a single target).  With probability ``noise`` the target is replaced by a word
  drawn uniformly from all targets of all classes (possibly the right one).
* ``<eos>``, appended by the LM reader to every line.

Words are generated left to right.  At a position where a pending target is due, that
target is written.  At any other ("free") position the next token is

* ``<eos>`` with probability ``end_prob``, allowed only when nothing is pending and the
  sentence is not empty (so dependencies never cross sentence boundaries);
* a trigger of class c with probability ``rate_c`` (uniform over the class's triggers),
  allowed only when no class-c target is pending and its target slot p + k_c is not
  already the slot of another pending target (so every slot has one owner);
* a filler otherwise (the probability of disallowed options goes to the filler).

The state of this process (is the sentence empty; for each class the number of steps
until its pending target, if any) is a function of the words so far, so the conditional
distribution of every token given the whole history is known exactly.

The exact entropy rate of the process is in :mod:`.entropy`, its planted embeddings in
:mod:`.embeddings` and the corpus on disk in :mod:`.corpus`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import write_atomic
from ..data import EOS
from .config import SynthConfig, SynthError, class_label
from .entropy import EntropyReport, exact_entropy

# Token kinds in the internal word numbering.
_EOS_KIND, _FILLER, _TRIGGER, _TARGET = 0, 1, 2, 3


@dataclass
class Sentences:
    """Generated text: internal word ids, every sentence followed by its ``<eos>`` (id 0)."""

    ids: np.ndarray  # int32, flat
    language: SynthLanguage

    @property
    def n_tokens(self) -> int:
        return int(self.ids.size)

    @property
    def n_sentences(self) -> int:
        return int(np.count_nonzero(self.ids == 0))

    def lines(self) -> list[str]:
        words = np.asarray(self.language.words, dtype=object)
        ends = np.flatnonzero(self.ids == 0)
        starts = np.concatenate([[0], ends[:-1] + 1])
        return [" ".join(words[self.ids[s:e]]) for s, e in zip(starts, ends, strict=True)]

    def write(self, path: str | os.PathLike) -> None:
        """One sentence per line, words separated by spaces, no ``<eos>`` (the reader adds it)."""

        def write(tmp: Path) -> None:
            with open(tmp, "w", encoding="utf-8") as handle:
                for line in self.lines():
                    handle.write(line)
                    handle.write("\n")

        write_atomic(path, write)


class SynthLanguage:
    """The generating process of a configuration: words, sampling, scoring and entropy."""

    def __init__(self, config: SynthConfig) -> None:
        config.check()
        self.config = config
        trig = config.triggers
        self.n_classes = len(trig)
        self.delays = np.array([t.delay for t in trig], dtype=np.int64)
        self.rates = np.array([t.rate for t in trig], dtype=np.float64)
        self.n_trig = np.array([t.n_triggers for t in trig], dtype=np.int64)

        # Internal numbering: <eos>, fillers, then per class its triggers and its targets.
        words = [EOS] + [f"fill{i}" for i in range(config.n_fillers)]
        kind = [_EOS_KIND] + [_FILLER] * config.n_fillers
        cls = [-1] * len(words)
        index = [0] + list(range(config.n_fillers))
        self.trigger_ids: list[np.ndarray] = []
        self.target_ids: list[np.ndarray] = []
        for c, t in enumerate(trig):
            start = len(words)
            words += [f"{t.name}_trig{i}" for i in range(t.n_triggers)]
            kind += [_TRIGGER] * t.n_triggers
            cls += [c] * t.n_triggers
            index += list(range(t.n_triggers))
            self.trigger_ids.append(np.arange(start, len(words)))
            start = len(words)
            words += [f"{t.name}_tgt{j}" for j in range(t.values)]
            kind += [_TARGET] * t.values
            cls += [c] * t.values
            index += list(range(t.values))
            self.target_ids.append(np.arange(start, len(words)))
        self.words: tuple[str, ...] = tuple(words)
        self.word_index = {w: i for i, w in enumerate(words)}
        self.kind = np.array(kind, dtype=np.int8)
        self.cls = np.array(cls, dtype=np.int64)
        self.index = np.array(index, dtype=np.int64)
        self.filler_ids = np.arange(1, 1 + config.n_fillers)
        self.all_targets = np.concatenate(self.target_ids)

        weights = (np.arange(1, config.n_fillers + 1, dtype=np.float64)) ** -config.filler_zipf
        self.filler_probs = weights / weights.sum()
        self.filler_cdf = np.cumsum(self.filler_probs)
        self.filler_cdf[-1] = 1.0
        self.filler_entropy = float(-(self.filler_probs * np.log(self.filler_probs)).sum())

        # Target each trigger selects: (C, max n_triggers) in internal ids, padded with -1.
        width = int(self.n_trig.max())
        self.target_of = np.full((self.n_classes, width), -1, dtype=np.int64)
        for c, t in enumerate(trig):
            self.target_of[c, : t.n_triggers] = self.target_ids[c][t.value_of()]

        # Log-probabilities of a due slot's word: right target, or another target.
        m = self.all_targets.size
        eps = config.noise
        self.log_right = math.log(1.0 - eps + eps / m)
        self.log_wrong = math.log(eps / m) if eps > 0 else -math.inf

    # --- the rules, vectorised over sentences ---------------------------------------------
    def _free_probs(self, started: np.ndarray, pending: np.ndarray) -> np.ndarray:
        """(n, C + 2) probabilities of <eos>, each trigger class, filler at free positions.

        ``pending[r, c]`` is the number of steps until class c's target is due, -1 if none.
        """
        none = pending < 0
        probs = np.empty((len(started), self.n_classes + 2))
        probs[:, 0] = np.where(started & none.all(axis=1), self.config.end_prob, 0.0)
        # A class-c trigger now would put its target at distance k_c: that slot must be free.
        clash = (pending[:, :, None] == self.delays[None, None, :]).any(axis=1)
        probs[:, 1:-1] = np.where(none & ~clash, self.rates[None, :], 0.0)
        probs[:, -1] = 1.0 - probs[:, :-1].sum(axis=1)
        return probs

    def _advance(self, pending: np.ndarray) -> None:
        np.subtract(pending, 1, out=pending, where=pending > 0)

    # --- sampling -------------------------------------------------------------------------
    def _sample_sentences(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` sentences as flat internal ids, each ending with <eos> (0)."""
        C = self.n_classes
        rows = np.arange(n)
        started = np.zeros(n, dtype=bool)
        pending = np.full((n, C), -1, dtype=np.int64)
        owed = np.zeros((n, C), dtype=np.int64)  # the target each pending slot must receive
        out_rows: list[np.ndarray] = []
        out_toks: list[np.ndarray] = []
        while rows.size:
            m = rows.size
            tok = np.empty(m, dtype=np.int64)
            u = rng.random(m)
            v = rng.random(m)
            due = pending == 0
            is_due = due.any(axis=1)

            r = np.flatnonzero(is_due)
            if r.size:
                c = due[r].argmax(axis=1)
                right = owed[r, c]
                if self.config.noise > 0:
                    noisy = u[r] < self.config.noise
                    pick = self.all_targets[
                        np.minimum((v[r] * self.all_targets.size).astype(np.int64),
                                   self.all_targets.size - 1)
                    ]
                    tok[r] = np.where(noisy, pick, right)
                else:
                    tok[r] = right
                pending[r, c] = -1

            f = np.flatnonzero(~is_due)
            if f.size:
                probs = self._free_probs(started[f], pending[f])
                choice = (u[f, None] >= np.cumsum(probs, axis=1)[:, :-1]).sum(axis=1)
                is_eos = choice == 0
                tok[f[is_eos]] = 0
                fill = choice == C + 1
                fi = np.searchsorted(self.filler_cdf, v[f[fill]], side="right")
                tok[f[fill]] = self.filler_ids[np.minimum(fi, self.filler_ids.size - 1)]
                trig = np.flatnonzero(~is_eos & ~fill)
                if trig.size:
                    rr = f[trig]
                    c = choice[trig] - 1
                    j = np.minimum((v[rr] * self.n_trig[c]).astype(np.int64), self.n_trig[c] - 1)
                    tok[rr] = self.trigger_ids_flat(c, j)
                    pending[rr, c] = self.delays[c]
                    owed[rr, c] = self.target_of[c, j]

            out_rows.append(rows)
            out_toks.append(tok)
            started[:] = True
            self._advance(pending)
            keep = tok != 0
            rows, started, pending, owed = rows[keep], started[keep], pending[keep], owed[keep]

        sent = np.concatenate(out_rows)
        toks = np.concatenate(out_toks)
        # Steps were appended position by position; a stable sort by sentence restores text order.
        order = np.argsort(sent, kind="stable")
        return toks[order].astype(np.int32)

    def trigger_ids_flat(self, c: np.ndarray, j: np.ndarray) -> np.ndarray:
        starts = np.array([ids[0] for ids in self.trigger_ids], dtype=np.int64)
        return starts[c] + j

    def sample(self, n_tokens: int, rng: np.random.Generator) -> Sentences:
        """Whole sentences until at least ``n_tokens`` tokens (``<eos>`` included)."""
        if n_tokens < 1:
            raise SynthError(f"n_tokens must be positive, got {n_tokens}")
        mean = self.entropy().mean_sentence_tokens
        chunks: list[np.ndarray] = []
        total = 0
        while total < n_tokens:
            n = int(math.ceil((n_tokens - total) / mean * 1.05)) + 8
            ids = self._sample_sentences(n, rng)
            chunks.append(ids)
            total += ids.size
        ids = np.concatenate(chunks)
        # Keep the shortest prefix of whole sentences that reaches n_tokens.
        ends = np.flatnonzero(ids == 0)
        last = ends[np.searchsorted(ends, n_tokens - 1)]
        return Sentences(ids[: last + 1].copy(), self)

    # --- scoring --------------------------------------------------------------------------
    def encode_lines(self, lines: Iterable[str], source: str = "text") -> np.ndarray:
        """Internal ids of lines of text (``<eos>`` appended per line)."""
        index = self.word_index
        ids: list[int] = []
        for lineno, line in enumerate(lines, 1):
            for w in line.split():
                i = index.get(w)
                if i is None or i == 0:
                    raise SynthError(
                        f"{source}:{lineno}: word {w!r} is not a word of this synthetic language"
                    )
                ids.append(i)
            ids.append(0)
        return np.asarray(ids, dtype=np.int64)

    def log_probs(self, ids: np.ndarray, *, strict: bool = True) -> np.ndarray:
        """``ln P(w_t | history)`` for every token of a text of whole sentences.

        ``ids`` are internal ids with ``<eos>`` (0) ending every sentence.  Impossible tokens
        get ``-inf``; with ``strict`` they raise, naming the sentence and position.
        """
        ids = np.asarray(ids, dtype=np.int64)
        if ids.size == 0:
            return np.zeros(0)
        if ids[-1] != 0:
            raise SynthError("the text must end with a complete sentence (<eos>)")
        ends = np.flatnonzero(ids == 0)
        starts = np.concatenate([[0], ends[:-1] + 1])
        lengths = ends - starts + 1
        n = starts.size
        C = self.n_classes
        out = np.empty(ids.size)
        rows = np.arange(n)
        started = np.zeros(n, dtype=bool)
        pending = np.full((n, C), -1, dtype=np.int64)
        owed = np.zeros((n, C), dtype=np.int64)
        pos = 0
        while rows.size:
            at = starts[rows] + pos
            tok = ids[at]
            kind = self.kind[tok]
            tcls = self.cls[tok]
            lp = np.full(rows.size, -np.inf)
            due = pending == 0
            is_due = due.any(axis=1)

            r = np.flatnonzero(is_due)
            if r.size:
                c = due[r].argmax(axis=1)
                is_target = kind[r] == _TARGET
                lp[r] = np.where(
                    tok[r] == owed[r, c], self.log_right,
                    np.where(is_target, self.log_wrong, -np.inf),
                )
                pending[r, c] = -1

            f = np.flatnonzero(~is_due)
            if f.size:
                probs = self._free_probs(started[f], pending[f])
                k = kind[f]
                with np.errstate(divide="ignore"):
                    lprobs = np.log(probs)
                col = np.where(k == _EOS_KIND, 0, np.where(k == _FILLER, C + 1, tcls[f] + 1))
                base = lprobs[np.arange(f.size), col]
                word = np.zeros(f.size)
                fill = k == _FILLER
                word[fill] = np.log(self.filler_probs[self.index[tok[f[fill]]]])
                trig = k == _TRIGGER
                word[trig] = -np.log(self.n_trig[tcls[f[trig]]])
                lp[f] = np.where(k == _TARGET, -np.inf, base + word)
                rr = f[trig]
                if rr.size:
                    cc = tcls[rr]
                    ok = pending[rr, cc] < 0  # an impossible trigger (-inf) must not corrupt state
                    pending[rr[ok], cc[ok]] = self.delays[cc[ok]]
                    owed[rr[ok], cc[ok]] = self.target_of[cc[ok], self.index[tok[rr[ok]]]]

            if strict and not np.isfinite(lp).all():
                bad = int(np.flatnonzero(~np.isfinite(lp))[0])
                raise SynthError(
                    f"sentence {int(rows[bad]) + 1}, word {pos + 1} "
                    f"({self.words[int(tok[bad])]!r}) is impossible in this language"
                )
            out[at] = lp
            started[:] = True
            self._advance(pending)
            pos += 1
            keep = lengths[rows] > pos
            rows, started, pending, owed = rows[keep], started[keep], pending[keep], owed[keep]
        return out

    def empirical_cross_entropy(self, ids: np.ndarray) -> dict[str, float]:
        """Mean ``-ln P`` per token under the true process, with its standard error.

        The error treats sentences as the independent units (a ratio estimator).
        """
        lp = self.log_probs(ids)
        ends = np.flatnonzero(np.asarray(ids) == 0)
        sent_nll = -np.add.reduceat(lp, np.concatenate([[0], ends[:-1] + 1]))
        lengths = np.diff(np.concatenate([[-1], ends]))
        ce = float(sent_nll.sum() / lengths.sum())
        n = sent_nll.size
        resid = sent_nll - ce * lengths
        se = float(math.sqrt((resid**2).sum() / max(n - 1, 1) / n) / lengths.mean())
        return {"cross_entropy_nats": ce, "perplexity": math.exp(ce), "std_error": se,
                "tokens": int(lengths.sum()), "sentences": int(n)}

    def score_file(self, path: str | os.PathLike) -> dict[str, float]:
        """The ideal model's cross-entropy on a text file in the LM's format."""
        path = Path(path)
        if not path.is_file():
            raise SynthError(f"text file not found: {path}")
        with open(path, encoding="utf-8") as handle:
            ids = self.encode_lines(handle, str(path))
        return self.empirical_cross_entropy(ids)
    # --- exact entropy --------------------------------------------------------------------
    def entropy(self) -> EntropyReport:
        """The exact entropy rate, from the stationary distribution of the state chain."""
        cached = getattr(self, "_entropy", None)
        if cached is None:
            cached = self._entropy = exact_entropy(self)
        return cached

    # --- ground truth ---------------------------------------------------------------------
    def classes(self) -> dict[str, list[str]]:
        """Word classes for per-class analysis: each trigger class, filler, target."""
        w = self.words
        out = {class_label(t): [w[i] for i in self.trigger_ids[c]]
               for c, t in enumerate(self.config.triggers)}
        out["filler"] = [w[i] for i in self.filler_ids]
        out["target"] = [w[i] for i in self.all_targets]
        out.update(self.property_classes())
        return out

    def property_classes(self) -> dict[str, list[str]]:
        """For each class that passes on a feature (a *property*, e.g. number): its
        carriers by value (``trigger_<name>_v<j>``) and its agreeing words
        (``target_<name>``); the difference of the ``_v1`` and ``_v0`` means is the
        property's direction."""
        w = self.words
        out: dict[str, list[str]] = {}
        for c, t in enumerate(self.config.triggers):
            if t.remembered != "feature":
                continue
            values = t.value_of()
            for j in range(t.values):
                out[f"{class_label(t)}_v{j}"] = [w[i] for i, v in
                                                 zip(self.trigger_ids[c], values, strict=True)
                                                 if v == j]
            out[f"target_{t.name}"] = [w[i] for i in self.target_ids[c]]
        return out

    def ground_truth(self) -> dict[str, dict[str, Any]]:
        """Per class: how long its words must be remembered, and what about them."""
        w = self.words
        truth: dict[str, dict[str, Any]] = {}
        for c, t in enumerate(self.config.triggers):
            truth[class_label(t)] = {
                "memory_span": t.delay,
                "remembered": t.remembered,
                "n_values": t.values,
                "rate": t.rate,
                "determines": f"the word exactly {t.delay} steps later",
                "target_of": {w[i]: w[int(self.target_of[c, j])]
                              for j, i in enumerate(self.trigger_ids[c])},
            }
            if t.remembered == "feature":
                # A property: the carrier's value must agree with the word t.delay later.
                truth[class_label(t)].update(
                    value_classes=[f"{class_label(t)}_v{j}" for j in range(t.values)],
                    agreeing_class=f"target_{t.name}", distance=t.delay)
        truth["filler"] = {
            "memory_span": 0, "remembered": None,
            "determines": "nothing: no later word depends on which filler was used",
            "probabilities": {w[i]: float(p) for i, p in zip(self.filler_ids, self.filler_probs, strict=True)},
        }
        truth["target"] = {
            "memory_span": 0, "remembered": None,
            "determines": "nothing: targets are predicted, never used later",
        }
        for t in self.config.triggers:
            if t.remembered != "feature":
                continue
            for j in range(t.values):
                truth[f"{class_label(t)}_v{j}"] = {
                    "memory_span": t.delay, "remembered": "feature", "value": j,
                    "determines": f"the carriers of {class_label(t)} with value {j}"}
            truth[f"target_{t.name}"] = {
                "memory_span": 0, "remembered": None,
                "determines": f"nothing: the words that agree with {class_label(t)}"}
        return truth


# --- embeddings with controlled per-direction variance ----------------------------------------
