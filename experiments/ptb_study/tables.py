"""Markdown tables for docs/study.md from the summary.json that figures.py writes.

Usage: python tables.py SUMMARY_JSON
"""

from __future__ import annotations

import json
import sys

DELAYS = ("1", "5", "10", "20", "50")


def _span(c: dict) -> str:
    if c["span"] is None:
        return "undefined"
    if c["span"] == -1:
        return ">199"
    lo, hi = c["span_jackknife_min"], c["span_jackknife_max"]
    rng = f" ({lo}-{hi})" if lo is not None and (lo, hi) != (c["span"], c["span"]) else ""
    return f"{c['span']}{rng}"


def memory_table(summary: dict, key: str = "curves") -> str:
    states = [s for s in (summary.get("states") or list(summary[key])) if s in summary[key]]
    first = summary[key][states[0]]
    head = ("| class | n (d=0) | state | S(0) [95% CI] | " + " | ".join(f"S({d})/S(0)" for d in DELAYS)
            + " | span (jackknife range) |")
    lines = [head, "|" + "---|" * (5 + len(DELAYS))]
    order = sorted(first, key=lambda n: (n != "all", -first[n]["count_d0"]))
    for name in order:
        for i, state in enumerate(states):
            c = summary[key][state][name]
            if c["count_d0"] == 0:
                continue
            s0 = f"{c['sum'][0]:.1f} [{c['lower'][0]:.1f}, {c['upper'][0]:.1f}]"
            ratios = " | ".join(f"{c['ratio_to_d0'][d]:.3f}" for d in DELAYS)
            label = name if i == 0 else ""
            n = str(c["count_d0"]) if i == 0 else ""
            lines.append(f"| {label} | {n} | {state} | {s0} | {ratios} | {_span(c)} |")
    return "\n".join(lines)


def direction_table(summary: dict) -> str:
    lines = ["| property | state | measure | " + " | ".join(f"d={d}" for d in ("0", "1", "5", "10", "20", "50", "100")) + " |",
             "|" + "---|" * 10]
    for state in summary["directions"]:
        dirs = summary["directions"][state]
        for prop, entry in dirs.items():
            if prop == "share_top5":
                continue
            for what in ("relative", "cosine"):
                e = entry[what]
                cells = []
                for d in ("0", "1", "5", "10", "20", "50", "100"):
                    lo, hi = e["ci_at"][d]
                    cells.append(f"{e['at'][d]:.2f} [{lo:.2f}, {hi:.2f}]")
                lines.append(f"| {prop} | {state} | {what} | " + " | ".join(cells) + " |")
    share = {s: summary["directions"][s]["share_top5"] for s in summary["directions"]}
    note = "; ".join(f"{s}: {v[0]:.2f} at d=0, {v[10]:.2f} at d=10, {v[50]:.2f} at d=50"
                     for s, v in share.items())
    return "\n".join(lines) + f"\n\nShare of the singular value sum in the top 5: {note}."


if __name__ == "__main__":
    summary = json.load(open(sys.argv[1]))
    print(memory_table(summary))
    print()
    print(direction_table(summary))
    if "frequency" in summary:
        print()
        print(memory_table(summary, "frequency"))
