"""Carry vs segment semantics on the same model, text and sample of start positions.

Usage: python compare_semantics.py CARRY_RESULT SEGMENT_RESULT STATS

Prints S(d), the normalised sum of singular values for all words, under both semantics
and their ratio at selected delays, and the memory span of each.
"""

from __future__ import annotations

import sys

import numpy as np

from stategrad import analysis
from stategrad.gradients import load_result

DELAYS = (0, 1, 2, 5, 10, 20, 50, 100, 150, 199)


def curve(path: str, stats) -> tuple[np.ndarray, np.ndarray]:
    res = load_result(path, blocks=False)
    report = analysis.memory_curves(res, normalize=stats, classes=["all"], fraction=0.1)
    c = report.curves[0]
    return np.asarray(c.totals, dtype=float), np.asarray(c.counts)


def main(carry: str, segment: str, stats_path: str) -> None:
    stats = analysis.load_embedding_stats(stats_path)
    (sc, nc), (ss, ns) = curve(carry, stats), curve(segment, stats)
    print(" delay  count_carry  count_segment  S_carry   S_segment  segment/carry")
    for d in DELAYS:
        ratio = ss[d] / sc[d] if nc[d] and ns[d] else float("nan")
        print(f" {d:>5} {nc[d]:>12} {ns[d]:>14} {sc[d]:>9.4g} {ss[d]:>11.4g} {ratio:>14.3f}")
    for name, s, n in (("carry", sc, nc), ("segment", ss, ns)):
        print(f"span ({name}): {analysis.memory_span(s, n, 0.1).format()}")


if __name__ == "__main__":
    main(*sys.argv[1:])
