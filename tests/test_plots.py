"""Figures: the data drawn equal the result's numbers, computed here directly with NumPy."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np
import pytest
from matplotlib.colors import to_hex
from reportdata import block_result

from stategrad.report import plots as P


def _L(E: int, seed: int = 0) -> np.ndarray:
    A = np.random.default_rng(seed).normal(size=(E, E))
    return np.linalg.cholesky(A @ A.T / E + np.eye(E))


def _direct_sv_sum(result, c, L=None) -> np.ndarray:
    out = []
    for d in range(result.max_delay):
        if result.counts[d, result.class_index(c)] == 0:
            out.append(np.nan)
            continue
        m = result.mean(d, c)
        out.append(np.linalg.svd(m if L is None else m @ L, compute_uv=False).sum())
    return np.array(out)


def _direct_jackknife_se(result, d, c, L=None) -> float:
    ci = result.class_index(c)
    thetas = []
    for b in range(result.block_sums.shape[0]):
        nb = result.block_counts[b, d, ci]
        if nb == 0:
            continue
        m = (result.sums[d, ci] - result.block_sums[b, d, ci]) / (result.counts[d, ci] - nb)
        thetas.append(np.linalg.svd(m if L is None else m @ L, compute_uv=False).sum())
    t = np.array(thetas)
    return float(np.sqrt((len(t) - 1) / len(t) * ((t - t.mean()) ** 2).sum()))


@pytest.mark.parametrize("normalised", [False, True])
def test_memory_curves_plot_the_results_numbers(normalised):
    r = block_result(D=7, H=6, E=4)
    L = _L(4) if normalised else None
    fig = P.plot_memory_curves(r, normalize=L)
    ax = fig.axes[0]
    assert [line.get_label() for line in ax.lines] == r.classes
    for line, c in zip(ax.lines, r.classes, strict=True):
        np.testing.assert_array_equal(line.get_xdata(), np.arange(7))
        np.testing.assert_allclose(line.get_ydata(), _direct_sv_sum(r, c, L), rtol=1e-10)
    # The band of class "nouns" at delay 2: estimate +- t(B - 1) jackknife standard errors.
    band = ax.collections[1]
    verts = band.get_paths()[0].vertices
    se = _direct_jackknife_se(r, 2, "nouns", L)
    y = _direct_sv_sum(r, "nouns", L)[2]
    at2 = verts[np.isclose(verts[:, 0], 2.0), 1]
    from scipy.stats import t

    q = t.ppf(0.975, r.n_blocks - 1)  # every block of block_result holds nouns at delay 2
    assert at2.min() == pytest.approx(y - q * se, rel=1e-5)
    assert at2.max() == pytest.approx(y + q * se, rel=1e-5)
    assert ax.get_xlabel() == "delay (tokens)"
    assert ax.get_ylabel() == "sum of singular values"
    assert ("normalised" in ax.get_title()) == normalised


def test_empty_delays_are_gaps_not_zeros():
    r = block_result(D=6, per_block=(10, 4, 1), B=5)
    fig = P.plot_memory_curves(r, classes=["verbs"])
    y = fig.axes[0].lines[0].get_ydata()
    assert np.all(np.isfinite(y[:3])) and np.all(np.isnan(y[3:]))


def test_comparison_overlays_results_on_one_axes():
    a = block_result(D=6, seed=1)
    b = block_result(D=6, seed=2, metadata={"cell": "gru"})
    fig = P.plot_memory_curves([a, b], classes=["all", "nouns"])
    assert len(fig.axes) == 1
    ax = fig.axes[0]
    labels = [line.get_label() for line in ax.lines]
    assert labels == ["LSTM cell: all", "LSTM cell: nouns", "GRU cell: all", "GRU cell: nouns"]
    np.testing.assert_allclose(ax.lines[3].get_ydata(), _direct_sv_sum(b, "nouns"), rtol=1e-10)
    # Same class, same colour; different result, different line style.
    assert ax.lines[0].get_color() == ax.lines[2].get_color()
    assert ax.lines[0].get_linestyle() != ax.lines[2].get_linestyle()
    fig = P.plot_memory_curves([a, b], labels=["first", "second"], classes=["all"])
    assert [line.get_label() for line in fig.axes[0].lines] == ["first", "second"]
    with pytest.raises(P.PlotError, match="2 results"):
        P.plot_memory_curves([a, b], labels=["only one"])


def test_style_column_width_fonts_palette_log_scale():
    r = block_result()
    fig = P.plot_memory_curves(r, log_scale=True)
    ax = fig.axes[0]
    assert fig.get_figwidth() == pytest.approx(3.4)
    assert ax.get_yscale() == "log"
    texts = [ax.xaxis.label, ax.yaxis.label] + ax.get_xticklabels() + ax.get_yticklabels()
    legend = ax.get_legend()
    assert legend is not None
    texts += legend.get_texts()
    assert min(t.get_fontsize() for t in texts) >= 8
    palette = [c.lower() for c in P.OKABE_ITO]
    assert all(to_hex(line.get_color()) in palette for line in ax.lines)
    assert P.plot_memory_curves(r).axes[0].get_yscale() == "linear"


def test_topk_and_spectra_lines():
    r = block_result(D=8, H=6, E=4)
    L = _L(4, 1)
    fig = P.plot_topk(r, k=3, normalize=L, class_name="nouns")
    ax = fig.axes[0]
    assert len(ax.lines) == 3
    direct = np.stack([np.linalg.svd(r.mean(d, "nouns") @ L, compute_uv=False) for d in range(8)])
    for k, line in enumerate(ax.lines):
        np.testing.assert_allclose(line.get_ydata(), direct[:, k], rtol=1e-10)
    assert ax.get_ylabel() == "singular value (normalised)"

    fig = P.plot_spectra(r, delays=[0, 5])
    ax = fig.axes[0]
    assert [line.get_label() for line in ax.lines] == ["d = 0", "d = 5"]
    np.testing.assert_array_equal(ax.lines[1].get_xdata(), np.arange(1, 5))
    np.testing.assert_allclose(ax.lines[1].get_ydata(),
                               np.linalg.svd(r.mean(5), compute_uv=False), rtol=1e-10)
    assert ax.get_xlabel() == "rank" and ax.get_yscale() == "log"
    with pytest.raises(P.PlotError, match="delay 99"):
        P.plot_spectra(r, delays=[99])


def test_class_heatmap_shows_per_class_memory():
    r = block_result(D=6)
    fig = P.plot_class_heatmap(r)
    ax = fig.axes[0]
    image = ax.images[0].get_array()
    assert image.shape == (3, 6)
    for j, c in enumerate(r.classes):
        np.testing.assert_allclose(np.ma.filled(image[j], np.nan), _direct_sv_sum(r, c), rtol=1e-10)
    assert [t.get_text() for t in ax.get_yticklabels()] == r.classes
    assert ax.get_xlabel() == "delay (tokens)"
    assert fig.axes[-1].get_ylabel() == "sum of singular values"  # the colour bar


def test_relative_memory_and_subspace_cosine_curves():
    r = block_result(D=5, H=6, E=4)
    L = _L(4, 2)
    v = np.array([[1.0, -1.0, 0.5, 0.0]])
    n = P.whiten_directions(v, L)
    Zv = np.linalg.solve(L, v[0])
    np.testing.assert_allclose(n[0], Zv / np.linalg.norm(Zv))
    reps = P.direction_replicates(r, n, normalize=L, k=2)
    rel = P.plot_curves(P.direction_curves([("x", reps)], ["plural"], kind="relative"))
    cos = P.plot_curves(P.direction_curves([("x", reps)], ["plural"], kind="cosine"))
    for d in range(5):
        M = r.mean(d) @ L
        _, s, vt = np.linalg.svd(M)
        assert rel.axes[0].lines[0].get_ydata()[d] == pytest.approx(np.linalg.norm(M @ n[0]) / s[0])
        assert cos.axes[0].lines[0].get_ydata()[d] == pytest.approx(np.linalg.norm(vt[:2] @ n[0]))
    analysis = pytest.importorskip("stategrad.analysis")
    Z = np.linalg.inv(L)
    np.testing.assert_allclose(analysis.whitened_direction(v[0], Z), n[0], rtol=1e-10)


def test_sentence_heatmap_and_files(tmp_path):
    words = ["the", "cat", "sat", "down"]
    m = np.triu(np.arange(16.0).reshape(4, 4) + 1)
    m[np.tril_indices(4, -1)] = np.nan
    fig = P.plot_sentence(m, words)
    ax = fig.axes[0]
    np.testing.assert_array_equal(np.ma.filled(ax.images[0].get_array(), np.nan), m)
    assert [t.get_text() for t in ax.get_xticklabels()] == words
    paths = P.save_figure(fig, tmp_path / "sent")
    assert [p.suffix for p in paths] == [".png", ".svg"]
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    root = ET.parse(paths[1]).getroot()
    assert root.tag.endswith("svg")
    # The same data give the same SVG (no date, fixed ids): reports can be diffed.
    again = P.save_figure(P.plot_sentence(m, words), tmp_path / "sent2")[1].read_bytes()
    assert again == paths[1].read_bytes()
    with pytest.raises(P.PlotError, match="for 3 words"):
        P.plot_sentence(m, words[:3])
    with pytest.raises(P.PlotError, match="format"):
        P.write_figure(fig, tmp_path / "x.bmp")


def test_sixteen_classes_never_share_a_look():
    curves = [P.Curve(f"c{j}", np.arange(4), np.arange(4) + j + 1.0, color=j) for j in range(16)]
    ax = P.plot_curves(curves).axes[0]
    looks = {(to_hex(line.get_color()), line.get_linestyle(), line.get_marker()) for line in ax.lines}
    assert len(ax.lines) == 16 and len(looks) == 16
    # two results of 8 classes each: line style tells the results apart, colour the classes
    curves = [P.Curve(f"r{i} c{j}", np.arange(4), np.ones(4), color=j, style=i)
              for i in range(2) for j in range(8)]
    ax = P.plot_curves(curves).axes[0]
    assert len({(to_hex(x.get_color()), x.get_linestyle(), x.get_marker()) for x in ax.lines}) == 16


def test_axis_is_log_when_values_span_more_than_two_decades():
    x = np.arange(10)
    steep = [P.Curve("a", x, 10.0 ** -x.astype(float))]   # 9 decades
    flat = [P.Curve("a", x, 1.0 + x / 10)]               # less than one
    assert P.plot_curves(steep).axes[0].get_yscale() == "log"
    assert P.plot_curves(flat).axes[0].get_yscale() == "linear"
    assert P.plot_curves(steep, log_scale=False).axes[0].get_yscale() == "linear"
    assert P.plot_curves(flat, log_scale=True).axes[0].get_yscale() == "log"
    # exactly two decades stays linear; values at zero stay linear (log would hide them)
    assert P.plot_curves([P.Curve("a", x[:2], np.array([1.0, 100.0]))]).axes[0].get_yscale() == "linear"
    assert P.plot_curves([P.Curve("a", x, np.r_[0.0, steep[0].y[1:]])]).axes[0].get_yscale() == "linear"
    from matplotlib.colors import LogNorm
    fig = P.plot_heatmap([np.array([[1.0, 1e-4], [1e-2, 1e-3]])], ["a", "b"])
    assert isinstance(fig.axes[0].images[0].norm, LogNorm)
    fig = P.plot_heatmap([np.array([[1.0, 0.5], [0.2, 0.3]])], ["a", "b"])
    assert not isinstance(fig.axes[0].images[0].norm, LogNorm)


FOURTEEN = ("all", "to", "nouns", "pronouns", "verbs", "adjectives", "adverbs", "determiners",
            "prepositions", "conjunctions", "numbers", "punctuation", "proper nouns", "other")


def _outside(fig) -> list[str]:
    """Texts drawn (partly) outside the figure, as saved: each text's window extent is
    compared with the figure's box after an Agg draw with the figure's own layout."""
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.text import Text

    with matplotlib.rc_context(P.STYLE):
        canvas = FigureCanvasAgg(fig)
        canvas.draw()
        renderer = canvas.get_renderer()
    box = fig.bbox
    drawn = [t for ax in fig.axes for t in (ax.xaxis.label, ax.yaxis.label, ax.title)]
    for ax in fig.axes:
        # only the ticks inside the view limits are drawn
        for axis, lim in ((ax.xaxis, ax.get_xlim()), (ax.yaxis, ax.get_ylim())):
            lo, hi = sorted(lim)
            drawn += [tick.label1 for tick in axis.get_major_ticks()
                      if lo - 1e-9 <= tick.get_loc() <= hi + 1e-9]
    drawn += [t for lg in fig.legends + [ax.get_legend() for ax in fig.axes] if lg is not None
              for t in lg.get_texts()]
    drawn += [t for t in fig.findobj(Text) if t in fig.texts]
    bad = []
    for t in drawn:
        if not t.get_visible() or not t.get_text().strip():
            continue
        e = t.get_window_extent(renderer)
        if e.x0 < box.x0 - 1 or e.y0 < box.y0 - 1 or e.x1 > box.x1 + 1 or e.y1 > box.y1 + 1:
            bad.append(t.get_text())
    return bad


def test_no_text_is_cut_off():
    r = block_result(D=20, classes=FOURTEEN, per_block=tuple(range(40, 26, -1)))
    r2 = block_result(D=20, classes=FOURTEEN, per_block=tuple(range(40, 26, -1)), seed=3,
                      metadata={"cell": "gru"})
    short = block_result(D=8)
    figs = {
        "memory, 14 classes": P.plot_memory_curves(r),
        "memory, 2 x 14 classes": P.plot_memory_curves([r, r2]),
        "heat map, 14 classes": P.plot_class_heatmap(r),
        "heat map, 3 classes, normalised": P.plot_class_heatmap(short, normalize=np.eye(4)),
        "heat map, 1 class, normalised": P.plot_class_heatmap(short, classes=["all"], normalize=np.eye(4)),
        "top-k": P.plot_topk([short, block_result(D=8, seed=5)]),
        "spectra": P.plot_spectra(short),
        "sentence": P.plot_sentence(np.triu(np.ones((3, 3))), ["a", "b", "c"]),
        "sentence, long label": P.plot_sentence(np.triu(np.ones((3, 3))), ["the", "cat", "sat"],
                                                colorbar_label="top singular value of G L(t, k - t)"),
        "sentence, long word": P.plot_sentence(np.triu(np.ones((3, 3))), ["internationalization", "is", "long"],
                                               colorbar_label="top singular value of G L(t, k - t)",
                                               title="a title"),
    }
    for name, fig in figs.items():
        assert _outside(fig) == [], name
    # the check itself sees a label that sticks out
    fig = P.plot_class_heatmap(short, normalize=np.eye(4))
    fig.axes[-1].set_ylabel("a colour bar label far too long for this short figure, " * 3)
    assert _outside(fig)
