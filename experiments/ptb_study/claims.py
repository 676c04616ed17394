"""Numbers for the comparison with the papers' claims, from summary.json (figures.py).

Usage: python claims.py SUMMARY_JSON [MIN_COUNT]

- how the all-words memory curve decays: per-step retention S(d+1)/S(d) averaged over
  delay ranges, and the log-log slope (a power law has a constant slope, an exponential
  a constant per-step retention);
- which class has the largest absolute memory S(d) at selected delays, among classes
  with at least MIN_COUNT sampled occurrences, with the 95% jackknife interval.
"""

from __future__ import annotations

import json
import sys

import numpy as np


def main(path: str, min_count: int = 20) -> None:
    summary = json.load(open(path))
    for state, curves in summary["curves"].items():
        s = np.asarray(curves["all"]["sum"], float)
        print(f"{state}: per-step retention (geometric mean of S(d+1)/S(d))")
        for a, b in ((0, 5), (5, 10), (10, 20), (20, 50), (50, 100), (100, 199)):
            print(f"  d {a:>3}-{b:<3}: {(s[b] / s[a]) ** (1 / (b - a)):.3f}   "
                  f"log-log slope {np.log(s[b] / s[a]) / np.log(max(b, 1) / max(a, 1)):.2f}")
        big = [n for n, c in curves.items() if c["count_d0"] >= min_count and n != "all"]
        for d in (0, 1, 2, 5, 10, 20, 50):
            ranked = sorted(big, key=lambda n: -curves[n]["sum"][d])
            cells = ", ".join(f"{n} {curves[n]['sum'][d]:.3g} [{curves[n]['lower'][d]:.3g}, "
                              f"{curves[n]['upper'][d]:.3g}]" for n in ranked[:4])
            print(f"  d={d:<3} largest: {cells}")


if __name__ == "__main__":
    main(sys.argv[1], *(int(x) for x in sys.argv[2:]))
