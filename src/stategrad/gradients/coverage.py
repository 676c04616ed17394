"""Coverage records: which start positions of which text a result holds."""

from __future__ import annotations

import copy
from typing import Any

from .errors import ResultError

# metadata["coverage"] is a list of {"text": SHA-256 of the token ids, "tokens": N,
# "sampling": the rule, "ranges": [[start, stop], ...]} (half-open ranges of start positions,
# sorted and disjoint).  Two results overlap when they have ranges of the same text that
# intersect, whatever their sampling: a sampled and an unsampled run of one range share
# positions, and telling exactly which would need the masks.


def sampling_rule(every: int | None, fraction: float | None, seed: int | None) -> dict[str, Any]:
    """The engine's sampling options as a rule: every start, every K-th, or a seeded fraction."""
    if every is not None and every > 1:
        return {"rule": "every", "every": int(every)}
    if fraction is not None and fraction < 1:
        return {"rule": "fraction", "fraction": float(fraction), "seed": seed}
    return {"rule": "all"}


def coverage_record(text_sha256: str, tokens: int, start: int, stop: int,
                    sampling: dict[str, Any]) -> list[dict[str, Any]]:
    """The coverage of one run over start positions ``[start, stop)`` of one text."""
    ranges = [[int(start), int(stop)]] if stop > start else []
    return [{"text": text_sha256, "tokens": int(tokens), "sampling": dict(sampling),
             "ranges": ranges}]


def coverage_overlaps(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> list[str]:
    """The ranges of start positions that ``a`` and ``b`` both cover, described."""
    found = []
    for ea in a:
        for eb in b:
            if ea["text"] != eb["text"]:
                continue
            for ra in ea["ranges"]:
                for rb in eb["ranges"]:
                    lo, hi = max(ra[0], rb[0]), min(ra[1], rb[1])
                    if lo < hi:
                        found.append(f"[{ra[0]}, {ra[1]}) and [{rb[0]}, {rb[1]}) share start "
                                     f"positions [{lo}, {hi}) of text {ea['text'][:12]}...")
    return found


def union_coverage(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Both coverages in one record: ranges of one text and sampling rule joined."""
    out: list[dict[str, Any]] = copy.deepcopy(a)
    for eb in b:
        same = next((e for e in out if e["text"] == eb["text"] and e["sampling"] == eb["sampling"]),
                    None)
        if same is None:
            out.append(copy.deepcopy(eb))
            continue
        joined: list[list[int]] = []
        for lo, hi in sorted(same["ranges"] + eb["ranges"]):
            if joined and lo <= joined[-1][1]:
                joined[-1][1] = max(joined[-1][1], hi)
            else:
                joined.append([lo, hi])
        same["ranges"] = joined
    return out


def merged_coverage(a: dict[str, Any], b: dict[str, Any],
                    allow_unknown: bool = False) -> list[dict[str, Any]] | None:
    """The coverage of the merge of results with metadata ``a`` and ``b`` (None: unknown).
    Raises :class:`ResultError` on an overlap, or on a missing record unless allowed."""
    ca, cb = a.get("coverage"), b.get("coverage")
    if ca is None or cb is None:
        if not allow_unknown:
            raise ResultError(
                "cannot merge: a result has no coverage record (written before stategrad "
                "recorded which start positions a result covers), so an overlap cannot be "
                "ruled out; --allow-unknown-coverage merges it anyway")
        return None
    overlaps = coverage_overlaps(ca, cb)
    if overlaps:
        raise ResultError("cannot merge overlapping results (their sums would count these "
                          "start positions twice): " + "; ".join(overlaps))
    return union_coverage(ca, cb)
