"""The exact entropy rate of a synthetic language.

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

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .config import class_label

#: A state of the generating chain: (sentence started, steps until each class's target
#: is due, -1 for none).
State = tuple


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


def exact_entropy(language) -> EntropyReport:
    """The exact entropy rate of a :class:`~stategrad.synth.SynthLanguage`, from the
    stationary distribution of its state chain."""
    h_due, h_forgot = _due_entropies(language)
    chain = _StateChain(language, h_due)
    P, h, kinds, due_class = chain.explore()
    pi = _stationary(P)
    rate = float(pi @ h)
    shares = np.asarray(kinds).T @ pi
    due_class = np.asarray(due_class)
    forgotten = {}
    for c, t in enumerate(language.config.triggers):
        hc = np.where(due_class == c, h_forgot[c], h)
        forgotten[class_label(t)] = float(pi @ hc)
    return EntropyReport(
        rate=rate,
        mean_sentence_tokens=float(1.0 / pi[0]),
        token_shares={k: float(s) for k, s in zip(("eos", "trigger", "filler", "target"), shares, strict=True)},
        rate_if_forgotten=forgotten,
        states=P.shape[0],
    )


def _due_entropies(language) -> tuple[float, list[float]]:
    """The entropy of a due slot's word, and per class the same if the class's trigger
    value were not known."""
    cfg = language.config
    m = language.all_targets.size
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
    return h_due, h_forgot


class _StateChain:
    """The Markov chain of the generating process, explored breadth-first from the
    empty-sentence state: its transition matrix and, per state, the entropy of the next
    token, the probabilities of each kind of token and the class whose target is due."""

    def __init__(self, language, h_due: float):
        self.C = language.n_classes
        self.end_prob = language.config.end_prob
        self.delays = [int(k) for k in language.delays]
        self.rates = [float(r) for r in language.rates]
        self.log_n = [math.log(n) for n in language.n_trig]
        self.filler_entropy = language.filler_entropy
        self.h_due = h_due
        self.start: State = (False,) + (-1,) * self.C
        self.h: list[float] = []  # entropy per state
        self.kinds: list[tuple[float, float, float, float]] = []  # eos, trigger, filler, target
        self.due_class: list[int] = []

    def explore(self):
        import scipy.sparse as sp

        index = {self.start: 0}
        order = [self.start]
        src: list[int] = []
        dst: list[int] = []
        val: list[float] = []
        i = 0
        while i < len(order):
            for s, p in self._step(order[i]):
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
        return P, np.asarray(self.h), self.kinds, self.due_class

    def _step(self, state: State) -> list[tuple[State, float]]:
        """The successors of ``state`` with their probabilities; records its entropy, kinds
        of token and due class."""
        started, pend = state[0], state[1:]
        if 0 in pend:
            c = pend.index(0)
            after = tuple(-1 if j == c else (d - 1 if d > 0 else d) for j, d in enumerate(pend))
            self.h.append(self.h_due)
            self.kinds.append((0.0, 0.0, 0.0, 1.0))
            self.due_class.append(c)
            return [((True,) + after, 1.0)]
        return self._free_step(started, pend)

    def _free_step(self, started: bool, pend: tuple) -> list[tuple[State, float]]:
        C, delays = self.C, self.delays
        nxt: list[tuple[State, float]] = []
        moved = tuple(d - 1 if d > 0 else d for d in pend)
        p_eos = self.end_prob if started and all(d < 0 for d in pend) else 0.0
        p_trig = [
            self.rates[c] if pend[c] < 0 and delays[c] not in pend else 0.0 for c in range(C)
        ]
        p_fill = 1.0 - p_eos - sum(p_trig)
        if p_eos:
            nxt.append((self.start, p_eos))
        for c in range(C):
            if p_trig[c]:
                after = tuple(delays[c] - 1 if j == c else d for j, d in enumerate(moved))
                nxt.append(((True,) + after, p_trig[c]))
        nxt.append(((True,) + moved, p_fill))
        probs = [p for p in [p_eos, *p_trig, p_fill] if p > 0]
        self.h.append(
            -sum(p * math.log(p) for p in probs)
            + sum(p * ln for p, ln in zip(p_trig, self.log_n, strict=True))
            + p_fill * self.filler_entropy
        )
        self.kinds.append((p_eos, sum(p_trig), p_fill, 0.0))
        self.due_class.append(-1)
        return nxt


def _stationary(P) -> np.ndarray:
    """Stationary pi: pi (P - I) = 0 with sum(pi) = 1 replacing the first equation."""
    import scipy.sparse as sp
    import scipy.sparse.linalg as spla

    n = P.shape[0]
    A = (P.T - sp.identity(n, format="csr")).tolil()
    A[0, :] = np.ones(n)
    rhs = np.zeros(n)
    rhs[0] = 1.0
    return spla.spsolve(A.tocsc(), rhs)
