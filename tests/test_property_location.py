"""relative-memory on the command line: the noise floor of ``absolute`` whenever the
result has blocks (not only with --ci), and the located delay (``locate_property``, the
largest bend down of ``absolute`` over the delays above the floor) in the text, the JSON
and the Python table."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from stategrad.analysis import (
    embedding_stats_from_array,
    floor_signal,
    load_embedding_stats,
    locate_property,
    relative_memory,
)
from stategrad.analysis.locate import BEND_START
from stategrad.cli import main
from stategrad.gradients import GradientResult, load_result

#: |Gbar_d L n| planted below: a steep first step that levels off (the word's direct
#: effect, the largest bend at delay 2) and the property dropped at delay 6.
CURVE = np.array([1.0, 0.9, 0.3, 0.28, 0.26, 0.25, 0.1, 0.09, 0.08])
E, H = 5, 6


def _bend(values, signal, start) -> int:
    """The smallest second difference at d >= start whose d - 1 is signal, by loops."""
    best, at = np.inf, None
    for d in range(max(start, 2), len(values)):
        if not signal[d - 1]:
            continue
        bend = (values[d] - values[d - 1]) - (values[d - 1] - values[d - 2])
        if bend < best:
            best, at = bend, d
    return at


def _planted(blocks: bool = True, B: int = 8, seed: int = 0) -> GradientResult:
    """Class 'a' whose mean gradient along e_0 is CURVE[d] * u (|u| = 1) at every delay, in
    every block alike; other columns are noise, which n = e_0 does not see."""
    rng = np.random.default_rng(seed)
    D = len(CURVE)
    u = rng.normal(size=H)
    u /= np.linalg.norm(u)
    bc = rng.integers(3, 9, size=(B, D, 2))
    bs = rng.normal(size=(B, D, 2, H, E)) * bc[..., None, None]
    bs[..., 0] = (bc[..., None] * CURVE[None, :, None, None]) * u
    extra = dict(block_sums=bs, block_counts=bc, block_starts=np.arange(B) * 50) if blocks else {}
    return GradientResult(bs.sum(0), bc.sum(0), ["all", "a"], ["w"] * 10, {}, **extra)


def _files(tmp_path, blocks: bool = True):
    """The result, isotropic statistics (L a multiple of I) and v = e_0, on disk."""
    path = tmp_path / ("blocks.h5" if blocks else "plain.h5")
    _planted(blocks).save(path)
    X = np.concatenate([np.eye(E), -np.eye(E)]) * 3.0  # covariance a multiple of I
    embedding_stats_from_array(X).save(tmp_path / "stats.npz")
    np.save(tmp_path / "v.npy", np.eye(E)[0])
    return path, tmp_path / "stats.npz", tmp_path / "v.npy"


def _run(path, stats, v, out, *extra):
    r = CliRunner().invoke(main, ["relative-memory", str(path), "--normalize", str(stats),
                                  "--vector", str(v), "--class", "a", "--json", str(out),
                                  *map(str, extra)])
    assert r.exit_code == 0, r.output
    return r.output, json.loads(out.read_text())


def test_locate_property_is_the_bend_over_delays_above_the_floor():
    rows = [{"delay": d, "absolute": float(x)} for d, x in enumerate(CURVE)]
    every = np.ones(len(CURVE), dtype=bool)
    assert floor_signal(rows) is None  # no floor: every delay counts
    assert locate_property(rows) == _bend(CURVE, every, 3) == 6
    assert locate_property(rows, start=2) == _bend(CURVE, every, 2) == 2
    assert locate_property(rows, start=7) == _bend(CURVE, every, 7) != 6
    # a floor above delay 5's value rules out the bend at 6 (its value before is noise)
    floors = [0.05] * 5 + [0.3, 0.05, None, 0.05]  # delay 7 has no floor: counted as signal
    for r, f in zip(rows, floors, strict=True):
        r["absolute_floor"] = f
    signal = floor_signal(rows)
    assert signal.tolist() == [True] * 5 + [False] + [True] * 3
    assert locate_property(rows) == _bend(CURVE, signal, 3) not in (None, 6)
    with pytest.raises(ValueError, match="delay 2 or later"):
        locate_property(rows, start=1)


def test_the_table_locates_the_planted_drop_and_says_how():
    res = _planted()
    table = relative_memory(res, np.eye(E)[0], np.eye(E), c="a")
    assert np.allclose(table.curve(), CURVE)  # the plant is what the measure sees
    assert all(r["absolute_signal"] for r in table.rows)
    assert table.located_delay == 6 == table.largest_fall()
    early = relative_memory(res, np.eye(E)[0], np.eye(E), c="a", bend_start=2)
    assert early.located_delay == 2
    assert ("the amount kept bends down most at delay 6 (largest_bend from delay 3, over "
            "delays above the noise floor where there is one)") in table.format()
    with pytest.raises(ValueError, match="bend_start"):
        relative_memory(res, np.eye(E)[0], np.eye(E), c="a", bend_start=1)


def test_cli_gives_the_floor_without_ci_on_a_result_with_blocks(tmp_path):
    path, stats, v = _files(tmp_path)
    _, plain = _run(path, stats, v, tmp_path / "plain.json", "--csv", tmp_path / "t.csv")
    _, banded = _run(path, stats, v, tmp_path / "ci.json", "--ci", "jackknife")
    want = relative_memory(load_result(path), np.load(v), load_embedding_stats(stats), c="a")
    for got, ci, row in zip(plain["rows"], banded["rows"], want.rows, strict=True):
        assert got["absolute_floor"] == pytest.approx(row["absolute_floor"], rel=1e-12)
        assert got["absolute_floor"] == ci["absolute_floor"]
        assert got["absolute_signal"] == ci["absolute_signal"] == row["absolute_signal"]
        assert "absolute_lower" not in got  # no bands without --ci
    header = (tmp_path / "t.csv").read_text().splitlines()[0].split(",")
    assert {"absolute_floor", "absolute_signal"} <= set(header)


def test_cli_output_without_blocks_has_no_floor(tmp_path):
    path, stats, v = _files(tmp_path, blocks=False)
    _, out = _run(path, stats, v, tmp_path / "rm.json", "--csv", tmp_path / "t.csv")
    assert all("absolute_floor" not in r and "absolute_signal" not in r for r in out["rows"])
    assert "absolute_floor" not in (tmp_path / "t.csv").read_text()
    assert set(out) == {"class", "label", "top_k", "normalization", "interval", "level",
                        "rows", "empty", "located_delay", "located_from"}
    assert out["located_delay"] == 6  # no floor: every delay counts


def test_cli_reports_the_located_delay_and_bend_start(tmp_path):
    path, stats, v = _files(tmp_path)
    text, out = _run(path, stats, v, tmp_path / "rm.json")
    assert (out["located_delay"], out["located_from"]) == (6, BEND_START)
    assert out["located_delay"] == locate_property(out["rows"], start=BEND_START)
    assert ("the amount kept bends down most at delay 6 (largest_bend from delay 3, over "
            "delays above the noise floor where there is one)") in text
    text, out = _run(path, stats, v, tmp_path / "rm2.json", "--bend-start", 2)
    assert (out["located_delay"], out["located_from"]) == (2, 2)
    assert "bends down most at delay 2 (largest_bend from delay 2," in text
    text, out = _run(path, stats, v, tmp_path / "rm8.json", "--bend-start", 8)
    assert out["located_delay"] == 8 and out["located_from"] == 8
    r = CliRunner().invoke(main, ["relative-memory", str(path), "--normalize", str(stats),
                                  "--vector", str(v), "--bend-start", "1"])
    assert r.exit_code != 0 and "--bend-start" in r.output and "Traceback" not in r.output


def test_the_floor_reads_one_class_per_delay(tmp_path, monkeypatch):
    """On a result file the floor reads the class's sums alone, never a whole delay of
    every class (what a large result would make costly), and gets the same floor."""
    from stategrad.gradients.blocks import _FileBlocks

    path, _, _ = _files(tmp_path)
    memory = _planted()
    lazy = load_result(path)
    assert isinstance(lazy.block_sums, _FileBlocks)
    for d in (0, 4):
        np.testing.assert_array_equal(lazy.block_delay(d, "a"), lazy.block_delay(d)[:, 1])
        np.testing.assert_array_equal(memory.block_delay(d, 1), memory.block_delay(d)[:, 1])

    def whole_delay(self, d):
        raise AssertionError("read a whole delay")

    monkeypatch.setattr(_FileBlocks, "delay", whole_delay)
    v = np.random.default_rng(2).normal(size=E)
    got = relative_memory(lazy, v, np.eye(E), c="a").rows
    want = relative_memory(memory, v, np.eye(E), c="a").rows
    for g, w in zip(got, want, strict=True):
        assert g["absolute_floor"] == pytest.approx(w["absolute_floor"], rel=1e-5)
