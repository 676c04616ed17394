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

Exact entropy rate
------------------
Let ``H(s)`` be the entropy of the next-token distribution in state s:

* a due state: ``h = -a ln a - (M-1) b ln b`` with ``b = noise / M``, ``a = 1 - noise + b``
  and M the number of target words (0 when noise = 0);
* a free state: ``-sum_o P_o ln P_o + sum_c P_c ln n_c + P_fill H_fill``, over the
  allowed options o (``<eos>``, each trigger class, filler), with n_c triggers in class c
  and ``H_fill`` the entropy of the filler distribution.

The states form a finite Markov chain with one token per step (``<eos>`` leads back to the
empty-sentence state).  With ``pi`` its stationary distribution, the entropy rate per
token, ``<eos>`` included, is ``sum_s pi(s) H(s)`` nats: the conditional entropy of the
next word given the full history.  Because sentences are i.i.d. and delimited, this equals
``E[-ln P(sentence)] / E[tokens per sentence]``; ``empirical_cross_entropy`` measures the
same quantity on a generated text (what an ideal model's log perplexity would be there).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import write_atomic, write_text_atomic
from ..data import BOS, EOS, UNK, ClassSet, Vocabulary

FORMAT = "stategrad-synth"
FORMAT_VERSION = 1
PROPERTIES = ("identity", "feature", "class")
VARIANCE_PROFILES = ("equal", "unequal")
SPLITS = ("train", "valid", "test")
METADATA_FILE = "synth.json"
EMBEDDINGS_FILE = "embeddings.npz"

# Token kinds in the internal word numbering.
_EOS_KIND, _FILLER, _TRIGGER, _TARGET = 0, 1, 2, 3


class SynthError(ValueError):
    """A synthetic-language setting or file that cannot be used as asked."""


# --- configuration --------------------------------------------------------------------------


@dataclass(frozen=True)
class TriggerClass:
    """One class of trigger words that fix the word ``delay`` steps later."""

    name: str
    delay: int
    n_triggers: int = 8
    remembered: str = "identity"  # the property of the trigger that selects the target
    n_values: int | None = None  # only for remembered="feature"
    rate: float = 0.05

    @property
    def values(self) -> int:
        """How many different targets the class's triggers select."""
        if self.remembered == "identity":
            return self.n_triggers
        if self.remembered == "class":
            return 1
        return int(self.n_values or 0)

    def value_of(self) -> np.ndarray:
        """The property value of each trigger (index into the class's targets)."""
        i = np.arange(self.n_triggers)
        if self.remembered == "identity":
            return i
        if self.remembered == "class":
            return np.zeros_like(i)
        return i % self.values

    def check(self) -> None:
        where = f"trigger class {self.name!r}"
        if not self.name or any(ch.isspace() for ch in self.name):
            raise SynthError(f"trigger class name must be a non-empty word, got {self.name!r}")
        if not isinstance(self.delay, int) or self.delay < 1:
            raise SynthError(f"{where}: delay must be an integer >= 1, got {self.delay!r}")
        if not isinstance(self.n_triggers, int) or self.n_triggers < 1:
            raise SynthError(f"{where}: n_triggers must be >= 1, got {self.n_triggers!r}")
        if self.remembered not in PROPERTIES:
            raise SynthError(
                f"{where}: remembered must be one of {', '.join(PROPERTIES)}, got {self.remembered!r}"
            )
        if self.remembered == "feature":
            if self.n_values is None or not 2 <= self.n_values <= self.n_triggers:
                raise SynthError(
                    f"{where}: remembered='feature' needs n_values between 2 and n_triggers "
                    f"({self.n_triggers}), got {self.n_values!r}"
                )
        elif self.n_values is not None and self.n_values != self.values:
            raise SynthError(
                f"{where}: n_values is only used with remembered='feature' "
                f"(remembered={self.remembered!r} implies {self.values})"
            )
        if not 0.0 < self.rate < 1.0:
            raise SynthError(f"{where}: rate must be in (0, 1), got {self.rate!r}")


@dataclass(frozen=True)
class SynthConfig:
    """Everything that determines a generated corpus (and its embedding file)."""

    triggers: tuple[TriggerClass, ...]
    n_fillers: int = 50
    filler_zipf: float = 1.0
    end_prob: float = 0.06
    noise: float = 0.0
    train_tokens: int = 500_000
    valid_tokens: int = 50_000
    test_tokens: int = 50_000
    seed: int = 0
    embedding_dim: int = 0  # 0: no embedding file
    variance: str = "equal"
    scales: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "triggers", tuple(self.triggers))
        object.__setattr__(self, "scales", dict(self.scales))

    def check(self) -> None:
        if not self.triggers:
            raise SynthError("at least one trigger class is needed")
        for t in self.triggers:
            t.check()
        names = [t.name for t in self.triggers]
        if len(set(names)) != len(names):
            raise SynthError(f"trigger class names must be distinct, got {names}")
        if not isinstance(self.n_fillers, int) or self.n_fillers < 1:
            raise SynthError(f"n_fillers must be >= 1, got {self.n_fillers!r}")
        if not (self.filler_zipf >= 0 and math.isfinite(self.filler_zipf)):
            raise SynthError(f"filler_zipf must be >= 0, got {self.filler_zipf!r}")
        if not 0.0 < self.end_prob < 1.0:
            raise SynthError(f"end_prob must be in (0, 1), got {self.end_prob!r}")
        free = 1.0 - self.end_prob - sum(t.rate for t in self.triggers)
        if free <= 0:
            raise SynthError(
                f"end_prob + the trigger rates must stay below 1 (filler probability "
                f"{free:.3g}); lower end_prob or the rates"
            )
        if not 0.0 <= self.noise <= 1.0:
            raise SynthError(f"noise must be in [0, 1], got {self.noise!r}")
        for split in SPLITS:
            n = getattr(self, f"{split}_tokens")
            if not isinstance(n, int) or n < 1:
                raise SynthError(f"{split}_tokens must be a positive integer, got {n!r}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise SynthError(f"seed must be a non-negative integer, got {self.seed!r}")
        if not isinstance(self.embedding_dim, int) or self.embedding_dim < 0:
            raise SynthError(f"embedding_dim must be >= 0 (0: none), got {self.embedding_dim!r}")
        if self.variance not in VARIANCE_PROFILES:
            raise SynthError(
                f"variance must be one of {', '.join(VARIANCE_PROFILES)}, got {self.variance!r}"
            )
        known = set(embedding_groups(self))
        for key, value in self.scales.items():
            if key not in known:
                raise SynthError(
                    f"unknown embedding scale group {key!r}; the groups are {', '.join(sorted(known))}"
                )
            if not (value > 0 and math.isfinite(value)):
                raise SynthError(f"scale of group {key!r} must be positive, got {value!r}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["triggers"] = [asdict(t) for t in self.triggers]
        d["scales"] = dict(self.scales)
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SynthConfig:
        data = dict(data)
        try:
            triggers = tuple(TriggerClass(**t) for t in data.pop("triggers"))
            config = cls(triggers=triggers, **data)
        except (TypeError, KeyError) as exc:
            raise SynthError(f"not a synthetic-language configuration: {exc}") from None
        config.check()
        return config


def _trigger(k: int, n: int, rate: float, **kw: Any) -> TriggerClass:
    return TriggerClass(name=f"k{k}", delay=k, n_triggers=n, rate=rate, **kw)


PRESETS: dict[str, SynthConfig] = {
    # Small and quick: a 64-unit LSTM (frozen 32-dim embeddings, Adam 0.005) comes within
    # 0.015 nats of the entropy rate in about 10 epochs, some 20 s on one CPU core.
    "demo": SynthConfig(
        triggers=(_trigger(5, 6, 0.08), _trigger(15, 6, 0.08)),
        n_fillers=20,
        filler_zipf=1.0,
        end_prob=0.08,
        noise=0.0,
        train_tokens=120_000,
        valid_tokens=8_000,
        test_tokens=8_000,
        embedding_dim=32,
    ),
    # The setting: triggers remembered for 5 and for 15 steps.
    "default": SynthConfig(
        triggers=(_trigger(5, 10, 0.05), _trigger(15, 10, 0.05)),
        n_fillers=100,
        filler_zipf=1.0,
        end_prob=0.06,
        noise=0.05,
        train_tokens=500_000,
        valid_tokens=50_000,
        test_tokens=50_000,
        embedding_dim=48,
    ),
}


def preset(name: str = "default", **overrides: Any) -> SynthConfig:
    """A preset configuration (``demo`` or ``default``) with some fields replaced."""
    if name not in PRESETS:
        raise SynthError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    try:
        config = replace(PRESETS[name], **overrides)
    except TypeError as exc:
        raise SynthError(f"bad override for preset {name!r}: {exc}") from None
    config.check()
    return config


# --- the language -----------------------------------------------------------------------------


def _class_label(t: TriggerClass) -> str:
    return f"trigger_{t.name}"


def embedding_groups(config: SynthConfig) -> list[str]:
    """Names of the embedding blocks that a scale can be given to."""
    return ["groups", "filler", "target"] + [_class_label(t) for t in config.triggers]


@dataclass(frozen=True)
class EntropyReport:
    """The exact entropy rate of a language and the quantities that come with it."""

    rate: float  # nats per token, <eos> included
    mean_sentence_tokens: float  # <eos> included
    token_shares: dict[str, float]  # expected share of tokens of each kind
    rate_if_forgotten: dict[str, float]  # rate when a class's trigger values are unknown
    states: int

    @property
    def perplexity(self) -> float:
        return math.exp(self.rate)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rate_nats_per_token": self.rate,
            "rate_bits_per_token": self.rate / math.log(2),
            "perplexity": self.perplexity,
            "mean_sentence_tokens": self.mean_sentence_tokens,
            "token_shares": self.token_shares,
            "rate_if_values_forgotten": self.rate_if_forgotten,
            "perplexity_if_values_forgotten": {
                k: math.exp(v) for k, v in self.rate_if_forgotten.items()
            },
            "markov_states": self.states,
            "definition": (
                "conditional entropy of the next token given the full history, per token, "
                "<eos> included: sum over the states s of the generating Markov chain of "
                "pi(s) H(s), pi the stationary distribution (see stategrad.synth)"
            ),
        }


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
        if cached is not None:
            return cached
        import scipy.sparse as sp
        import scipy.sparse.linalg as spla

        C = self.n_classes
        cfg = self.config
        delays = [int(k) for k in self.delays]
        rates = [float(r) for r in self.rates]
        log_n = [math.log(n) for n in self.n_trig]
        m = self.all_targets.size
        eps = cfg.noise
        b = eps / m
        a = 1.0 - eps + b
        h_due = -(a * math.log(a)) - ((m - 1) * b * math.log(b) if b > 0 else 0.0)
        # A due slot's entropy if the class's trigger value is not known: the right target is
        # then drawn from the class's value distribution (values of uniformly drawn triggers).
        h_forgot = []
        for c, t in enumerate(cfg.triggers):
            q = np.bincount(t.value_of(), minlength=t.values) / t.n_triggers
            p = np.full(m, b)
            offset = sum(u.values for u in cfg.triggers[:c])  # class c's place in all_targets
            p[offset : offset + t.values] += (1.0 - eps) * q
            p = p[p > 0]
            h_forgot.append(float(-(p * np.log(p)).sum()))

        start = (False,) + (-1,) * C
        index = {start: 0}
        order = [start]
        src: list[int] = []
        dst: list[int] = []
        val: list[float] = []
        h = []  # entropy per state
        kinds = []  # (eos, trigger, filler, target) probabilities per state
        due_class = []
        i = 0
        while i < len(order):
            state = order[i]
            started, pend = state[0], state[1:]
            nxt: list[tuple[tuple, float]] = []
            if 0 in pend:
                c = pend.index(0)
                after = tuple(-1 if j == c else (d - 1 if d > 0 else d) for j, d in enumerate(pend))
                nxt.append(((True,) + after, 1.0))
                h.append(h_due)
                kinds.append((0.0, 0.0, 0.0, 1.0))
                due_class.append(c)
            else:
                moved = tuple(d - 1 if d > 0 else d for d in pend)
                p_eos = cfg.end_prob if started and all(d < 0 for d in pend) else 0.0
                p_trig = [
                    rates[c] if pend[c] < 0 and delays[c] not in pend else 0.0 for c in range(C)
                ]
                p_fill = 1.0 - p_eos - sum(p_trig)
                if p_eos:
                    nxt.append((start, p_eos))
                for c in range(C):
                    if p_trig[c]:
                        after = tuple(delays[c] - 1 if j == c else d for j, d in enumerate(moved))
                        nxt.append(((True,) + after, p_trig[c]))
                nxt.append(((True,) + moved, p_fill))
                probs = [p for p in [p_eos, *p_trig, p_fill] if p > 0]
                h.append(
                    -sum(p * math.log(p) for p in probs)
                    + sum(p * ln for p, ln in zip(p_trig, log_n, strict=True))
                    + p_fill * self.filler_entropy
                )
                kinds.append((p_eos, sum(p_trig), p_fill, 0.0))
                due_class.append(-1)
            for s, p in nxt:
                j = index.get(s)
                if j is None:
                    j = index[s] = len(order)
                    order.append(s)
                src.append(i)
                dst.append(j)
                val.append(p)
            i += 1

        n = len(order)
        P = sp.csr_matrix((val, (src, dst)), shape=(n, n))
        # Stationary pi: pi (P - I) = 0 with sum(pi) = 1 replacing the first equation.
        A = (P.T - sp.identity(n, format="csr")).tolil()
        A[0, :] = np.ones(n)
        rhs = np.zeros(n)
        rhs[0] = 1.0
        pi = spla.spsolve(A.tocsc(), rhs)
        h = np.asarray(h)
        rate = float(pi @ h)
        shares = np.asarray(kinds).T @ pi
        due_class = np.asarray(due_class)
        forgotten = {}
        for c, t in enumerate(cfg.triggers):
            hc = np.where(due_class == c, h_forgot[c], h)
            forgotten[_class_label(t)] = float(pi @ hc)
        report = EntropyReport(
            rate=rate,
            mean_sentence_tokens=float(1.0 / pi[0]),
            token_shares={k: float(s) for k, s in zip(("eos", "trigger", "filler", "target"), shares, strict=True)},
            rate_if_forgotten=forgotten,
            states=n,
        )
        self._entropy = report
        return report

    # --- ground truth ---------------------------------------------------------------------
    def classes(self) -> dict[str, list[str]]:
        """Word classes for per-class analysis: each trigger class, filler, target."""
        w = self.words
        out = {_class_label(t): [w[i] for i in self.trigger_ids[c]]
               for c, t in enumerate(self.config.triggers)}
        out["filler"] = [w[i] for i in self.filler_ids]
        out["target"] = [w[i] for i in self.all_targets]
        return out

    def ground_truth(self) -> dict[str, dict[str, Any]]:
        """Per class: how long its words must be remembered, and what about them."""
        w = self.words
        truth: dict[str, dict[str, Any]] = {}
        for c, t in enumerate(self.config.triggers):
            truth[_class_label(t)] = {
                "memory_span": t.delay,
                "remembered": t.remembered,
                "n_values": t.values,
                "rate": t.rate,
                "determines": f"the word exactly {t.delay} steps later",
                "target_of": {w[i]: w[int(self.target_of[c, j])]
                              for j, i in enumerate(self.trigger_ids[c])},
            }
        truth["filler"] = {
            "memory_span": 0, "remembered": None,
            "determines": "nothing: no later word depends on which filler was used",
            "probabilities": {w[i]: float(p) for i, p in zip(self.filler_ids, self.filler_probs, strict=True)},
        }
        truth["target"] = {
            "memory_span": 0, "remembered": None,
            "determines": "nothing: targets are predicted, never used later",
        }
        return truth


# --- embeddings with controlled per-direction variance ----------------------------------------


def _default_scales(config: SynthConfig) -> dict[str, float]:
    scales = dict.fromkeys(embedding_groups(config), 1.0)
    if config.variance == "unequal":
        # The trap: the class remembered longest lives in the most stretched directions (its
        # raw gradients shrink by the stretch), the one remembered shortest in the most
        # squeezed (its raw gradients grow), so raw gradient sizes rank the classes backwards
        # and only the equal-variance normalisation restores the true order.  Scales run
        # geometrically from 1/3 to 3 with the delay: a condition number of 9.
        by_delay = sorted(config.triggers, key=lambda t: t.delay)
        n = len(by_delay)
        for i, t in enumerate(by_delay):
            frac = i / (n - 1) if n > 1 else 1.0
            scales[_class_label(t)] = float(3.0 ** (2 * frac - 1))
    scales.update(config.scales)
    return scales


def _allocate_dims(dim: int, capacity: dict[str, int], first: Sequence[str]) -> dict[str, int]:
    """Dims per block: the blocks in ``first`` (group codes, trigger identities) are filled
    to capacity in turn; targets and fillers share the rest in proportion to capacity."""
    left = dim
    dims = {}
    for name in first:
        dims[name] = min(capacity[name], left)
        left -= dims[name]
    cap_t, cap_f = capacity["target"], capacity["filler"]
    dims["target"] = min(cap_t, round(left * cap_t / max(cap_t + cap_f, 1)))
    dims["filler"] = min(cap_f, left - dims["target"])
    dims["target"] += left - dims["target"] - dims["filler"]  # what fillers cannot take
    return dims


def planted_embeddings(
    language: SynthLanguage,
    vocab: Vocabulary,
    counts: np.ndarray,
    *,
    dim: int,
    scales: Mapping[str, float] | None = None,
    seed: int = 0,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Embeddings with exactly diagonal token-weighted covariance and chosen per-axis scales.

    ``counts[v]`` is how often ``vocab.words[v]`` occurs in the reference text (the train
    split, ``<eos>`` included).  The E axes are cut into blocks:

    * ``groups``: which kind of word it is (a code per group: ``<eos>``, filler, target,
      each trigger class), so a linear unit can detect a trigger class;
    * one block per group with its members' identities, centred within the group.

    Centring each identity block within its group makes every cross-block covariance zero,
    so whitening each block alone whitens the whole; each block is then multiplied by its
    scale.  The unbiased (ddof=1) token-weighted covariance over the reference text is
    exactly ``diag(scale**2)`` and the mean is zero.  Words absent from the text (``<unk>``,
    ``<bos>``) get random vectors of the same per-axis scales.
    """
    scales = dict(scales or {})
    counts = np.asarray(counts, dtype=np.float64)
    if counts.shape != (len(vocab),):
        raise SynthError(f"counts must have one entry per vocabulary word ({len(vocab)})")
    total = counts.sum()
    if total < 2:
        raise SynthError("the reference text is too short to weight embeddings by")
    weights = counts / total
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5E3D]))

    group_of: dict[str, str] = {}
    for name, members in language.classes().items():
        for w in members:
            group_of[w] = name
    group_of[EOS] = "eos"
    groups = ["eos", "filler", "target"] + [_class_label(t) for t in language.config.triggers]
    vocab_group = [group_of.get(w) for w in vocab.words]
    for w, g in zip(vocab.words, vocab_group, strict=True):
        if g is None and w not in (UNK, BOS):
            raise SynthError(f"vocabulary word {w!r} is not a word of the synthetic language")
    present = {g: [v for v, gv in enumerate(vocab_group) if gv == g and counts[v] > 0]
               for g in groups}
    live = [g for g in groups if present[g]]
    capacity = {"groups": len(live) - 1}
    for g in groups[1:]:
        capacity[g] = max(len(present[g]) - 1, 0)
    trig_groups = [_class_label(t) for t in language.config.triggers]
    order = ["groups", *trig_groups, "target", "filler"]
    most = sum(capacity.values())
    if dim > most:
        raise SynthError(
            f"embedding_dim {dim} is more than this vocabulary can fill with independent "
            f"directions over the train text ({most}); use at most {most}"
        )
    dims = _allocate_dims(dim, capacity, ["groups", *trig_groups])
    short = [g for g in ["groups", *trig_groups] if dims[g] < capacity[g]]
    if short:
        need = capacity["groups"] + sum(capacity[g] for g in trig_groups)
        raise SynthError(
            f"embedding_dim {dim} leaves no room to tell every trigger apart "
            f"(blocks {', '.join(short)} cut short); use at least {need}"
        )

    V = len(vocab)
    X = np.zeros((V, dim))
    layout: dict[str, dict[str, Any]] = {}
    col = 0
    for block in order:
        d = dims[block]
        cols = np.arange(col, col + d)
        col += d
        layout[block] = {"axes": cols.tolist(), "scale": float(scales.get(block, 1.0))}
        if d == 0:
            continue
        if block == "groups":
            rows_by_group = [present[g] for g in live]
            codes = _unit_rows(rng, len(live), d)
            for g_rows, code in zip(rows_by_group, codes, strict=True):
                X[np.ix_(g_rows, cols)] = code
            members = [v for g in live for v in present[g]]
        else:
            members = present[block]
            X[np.ix_(members, cols)] = _unit_rows(rng, len(members), d)
            # Centre within the group: zero covariance with every other block.
            w = weights[members]
            X[np.ix_(members, cols)] -= (w @ X[np.ix_(members, cols)]) / w.sum()
        # Whiten the block over all tokens (population covariance), then scale it.
        sub = X[:, cols]
        mean = weights @ sub
        cov = (sub - mean).T @ ((sub - mean) * weights[:, None])
        try:
            chol = np.linalg.cholesky(cov)
        except np.linalg.LinAlgError:
            raise SynthError(f"embedding block {block!r} is degenerate; try another seed") from None
        white = np.linalg.solve(chol, (sub - mean).T).T
        # ddof=1 correction so that np.cov over the text's tokens gives exactly scale**2.
        X[:, cols] = white * layout[block]["scale"] * math.sqrt((total - 1) / total)

    scale_per_axis = np.empty(dim)
    for block in order:
        scale_per_axis[layout[block]["axes"]] = layout[block]["scale"]
    absent = np.flatnonzero(counts == 0)
    X[absent] = rng.standard_normal((absent.size, dim)) * scale_per_axis
    info = {
        "dim": dim,
        "blocks": layout,
        "variances": (scale_per_axis**2).tolist(),
        "weighted_by": "token counts of the train split, <eos> included; unbiased covariance",
        "absent_words": [vocab.words[v] for v in absent],
    }
    return X.astype(np.float32), info


def _unit_rows(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    """n random unit vectors in d dims: every one is a vertex of their convex hull, so a
    linear read-out can single out each."""
    if d == 1:
        # The 1-d "sphere" has two points; spread the words on a line instead.
        return np.linspace(-1.0, 1.0, n)[:, None]
    x = rng.standard_normal((n, d))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def save_embeddings(path: str | os.PathLike, vectors: np.ndarray, words: Sequence[str]) -> None:
    """The embedding file format: ``.npz`` with ``vectors`` (V, E) float32 and ``words``."""
    arrays = {"vectors": np.asarray(vectors, dtype=np.float32), "words": np.asarray(words, dtype=str)}
    write_atomic(path, lambda tmp: np.savez(tmp, **arrays), suffix=".tmp.npz")


# --- corpus on disk ---------------------------------------------------------------------------


@dataclass
class SynthCorpus:
    """A generated corpus on disk and its metadata."""

    directory: Path
    metadata: dict[str, Any]

    @property
    def language(self) -> SynthLanguage:
        return SynthLanguage(SynthConfig.from_dict(self.metadata["config"]))

    def path(self, split: str) -> Path:
        return self.directory / self.metadata["files"][split]

    @property
    def embeddings_path(self) -> Path | None:
        name = self.metadata["files"].get("embeddings")
        return self.directory / name if name else None

    def class_set(self, vocab: Vocabulary) -> ClassSet:
        """The ground-truth classes over an LM vocabulary, for per-class gradients."""
        truth = self.metadata["ground_truth"]
        definitions = {name: {"words": words, **{k: v for k, v in truth[name].items()
                                                  if k in ("memory_span", "remembered")}}
                       for name, words in self.metadata["classes"].items()}
        return ClassSet.from_word_sets(vocab, self.metadata["classes"], definitions)

    def memory_spans(self) -> dict[str, int]:
        return {k: int(v["memory_span"]) for k, v in self.metadata["ground_truth"].items()}


def generate_corpus(
    config: SynthConfig, directory: str | os.PathLike, *, overwrite: bool = False
) -> SynthCorpus:
    """Write ``train.txt valid.txt test.txt``, ``synth.json`` and (with ``embedding_dim``)
    ``embeddings.npz`` into ``directory``; returns the corpus with its metadata."""
    config.check()
    directory = Path(directory)
    files = {s: f"{s}.txt" for s in SPLITS}
    targets = [directory / f for f in [*files.values(), METADATA_FILE, EMBEDDINGS_FILE]]
    existing = [p.name for p in targets if p.exists()]
    if existing and not overwrite:
        raise SynthError(
            f"{directory} already holds {', '.join(existing)}; choose an empty directory "
            "or allow overwriting (--force)"
        )
    directory.mkdir(parents=True, exist_ok=True)
    language = SynthLanguage(config)
    entropy = language.entropy()

    # Independent streams per split: changing one split's size leaves the others unchanged.
    streams = np.random.SeedSequence(config.seed).spawn(len(SPLITS) + 1)
    splits: dict[str, Any] = {}
    empirical: dict[str, Any] = {}
    texts: dict[str, Sentences] = {}
    for split, stream in zip(SPLITS, streams, strict=False):
        text = language.sample(getattr(config, f"{split}_tokens"), np.random.default_rng(stream))
        text.write(directory / files[split])
        texts[split] = text
        splits[split] = {"sentences": text.n_sentences, "tokens": text.n_tokens,
                         "words": text.n_tokens - text.n_sentences}
    for split in ("valid", "test"):
        # Scored from the written file, so the number describes exactly what a model reads.
        empirical[split] = language.score_file(directory / files[split])

    embedding_info = None
    vocab = Vocabulary.build(directory / files["train"])
    if config.embedding_dim:
        internal = texts["train"].ids
        counts_internal = np.bincount(internal, minlength=len(language.words))
        counts = np.array([counts_internal[language.word_index[w]] if w in language.word_index
                           else 0 for w in vocab.words], dtype=np.int64)
        vectors, embedding_info = planted_embeddings(
            language, vocab, counts, dim=config.embedding_dim,
            scales=_default_scales(config), seed=int(streams[-1].generate_state(1)[0]),
        )
        save_embeddings(directory / EMBEDDINGS_FILE, vectors, vocab.words)
        files["embeddings"] = EMBEDDINGS_FILE
        embedding_info["profile"] = config.variance
        embedding_info["vocabulary_order"] = "Vocabulary.build on train.txt"

    metadata = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "config": config.to_dict(),
        "files": files,
        "splits": splits,
        "vocabulary": {
            "language_words": len(language.words) - 1,  # <eos> aside
            "lm_vocabulary_size": len(vocab),  # Vocabulary.build on train.txt
            "absent_from_train": sorted(set(language.words) - set(vocab.words)),
        },
        "classes": language.classes(),
        "ground_truth": language.ground_truth(),
        "entropy": entropy.to_dict(),
        "empirical": empirical,
        "embeddings": embedding_info,
        "description": (
            "Fillers need no memory; a trigger of class c fixes the word exactly k_c steps "
            "later (its target) through the property named in ground_truth; dependencies "
            "never cross sentence boundaries."
        ),
    }
    write_text_atomic(directory / METADATA_FILE, json.dumps(metadata, indent=1) + "\n")
    return SynthCorpus(directory, metadata)


def load_corpus(directory: str | os.PathLike) -> SynthCorpus:
    """A generated corpus from its directory (or the path of its ``synth.json``)."""
    path = Path(directory)
    meta_path = path if path.is_file() else path / METADATA_FILE
    if not meta_path.is_file():
        raise SynthError(f"no {METADATA_FILE} in {path}: not a generated synthetic corpus")
    try:
        metadata = json.loads(meta_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise SynthError(f"{meta_path} is not valid JSON: {exc}") from None
    if metadata.get("format") != FORMAT:
        raise SynthError(f"{meta_path} is not a {FORMAT} metadata file")
    if metadata.get("version") != FORMAT_VERSION:
        raise SynthError(
            f"{meta_path} has format version {metadata.get('version')}, "
            f"this stategrad reads version {FORMAT_VERSION}"
        )
    return SynthCorpus(meta_path.parent, metadata)
