"""The HTML report, the sentence view and their commands."""

from __future__ import annotations

import base64
import copy
import csv
import re
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from reportdata import block_result

from stategrad.cli import main
from stategrad.data import Vocabulary
from stategrad.lm import RNNLM, LanguageModel, ModelSpec, save_checkpoint
from stategrad.report import ReportError, build_report, sentence_map

WORDS = ("<unk>", "the", "cat", "sat", "on", "mat", "<eos>")


def _L(E: int, seed: int = 0) -> np.ndarray:
    A = np.random.default_rng(seed).normal(size=(E, E))
    return np.linalg.cholesky(A @ A.T / E + np.eye(E))


def _tiny_model(cell: str = "lstm", layers: int = 1, seed: int = 0) -> LanguageModel:
    torch.manual_seed(seed)
    spec = ModelSpec(vocab_size=len(WORDS), embedding_size=3, hidden_size=4, num_layers=layers,
                     cell=cell, init_scale=0.5)
    module = RNNLM(spec).eval()
    return LanguageModel(module, Vocabulary(WORDS))


def _autograd_pairs(model: LanguageModel, ids, state: str, layer: int = -1) -> np.ndarray:
    """[t, k] = d s_k / d x_t by torch.autograd in float64, one step at a time."""
    module = copy.deepcopy(model.module).double()
    rnn = module.rnn
    x0 = module.embedding.weight[torch.as_tensor(ids, dtype=torch.long)].detach()
    lstm = isinstance(rnn, torch.nn.LSTM)

    def states(x):
        st = None
        out = []
        for t in range(x.shape[0]):
            _, st = rnn(x[t : t + 1, None, :], st)
            if lstm:
                s = st[1] if state == "cell" else st[0]
            else:
                s = st
            out.append(s[layer, 0])
        return torch.stack(out)  # (T, H)

    J = torch.autograd.functional.jacobian(states, x0)  # (T_k, H, T_t, E)
    return J.permute(2, 0, 1, 3).numpy()  # (t, k, H, E)


@pytest.mark.parametrize("cell,state", [("lstm", "cell"), ("lstm", "hidden"), ("gru", "hidden")])
def test_sentence_map_matches_autograd(cell, state):
    model = _tiny_model(cell)
    text = "the cat sat on the mat"
    G = _autograd_pairs(model, model.vocab.encode(text.split()), state)
    T = 6
    smap = sentence_map(model, text, state=state)
    fro = np.sqrt((G**2).sum(axis=(2, 3)))
    upper = np.triu_indices(T)
    np.testing.assert_allclose(smap.matrix[upper], fro[upper], rtol=1e-9, atol=1e-12)
    assert np.all(np.isnan(smap.matrix[np.tril_indices(T, -1)]))
    L = _L(3)
    smap = sentence_map(model, text.split(), state=state, normalize=L, measure="sv1")
    sv1 = np.linalg.svd(G @ L, compute_uv=False)[..., 0]
    np.testing.assert_allclose(smap.matrix[upper], sv1[upper], rtol=1e-9, atol=1e-12)
    assert smap.normalised and "top singular value of G L" in smap.measure_label


def test_sentence_map_second_layer_and_unknown_words():
    model = _tiny_model("lstm", layers=2, seed=3)
    words = ["the", "dog", "sat"]
    smap = sentence_map(model, words, state="cell", layer=0)
    assert smap.unknown == ["dog"]
    assert list(smap.token_ids) == [1, 0, 3]
    assert smap.words == ["the", "<unk>", "sat"]  # labelled as the model read it
    G = _autograd_pairs(model, [1, 0, 3], "cell", layer=0)
    np.testing.assert_allclose(smap.matrix[0, 2], np.linalg.norm(G[0, 2]), rtol=1e-9)
    with pytest.raises(ReportError, match="empty"):
        sentence_map(model, "   ")
    with pytest.raises(ReportError, match="measure"):
        sentence_map(model, "the cat", measure="max")
    with pytest.raises(ReportError, match="4-dimensional"):
        sentence_map(model, "the cat", normalize=np.eye(4))


def test_sentence_map_draws_gradients_from_the_caller_and_L_is_a_deprecated_alias():
    from stategrad.gradients import sentence_gradients
    from stategrad.report import sentence_map_from_gradients

    model = _tiny_model("lstm")
    words = "the cat sat".split()
    ids = model.vocab.encode(words)
    L = _L(3)
    G = sentence_gradients(model, ids, state="cell")
    view = sentence_map_from_gradients(G, words, ids, state="cell", normalize=L, measure="sv1")
    with pytest.warns(DeprecationWarning, match="normalize="):
        old = sentence_map(model, words, state="cell", L=L, measure="sv1")
    np.testing.assert_array_equal(view.matrix, old.matrix)
    assert view.measure_label == old.measure_label
    with pytest.raises(TypeError, match="not both"):
        sentence_map(model, words, normalize=L, L=L)


def _images(page: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'src="data:image/svg\+xml;base64,([^"]+)"', page)]


def test_report_is_self_contained_and_shows_the_numbers(tmp_path):
    a = block_result(D=8, H=6, E=4, seed=1)
    b = block_result(D=8, H=6, E=4, seed=2, metadata={"cell": "gru", "state": "hidden"})
    L = _L(4)
    path = build_report([a, b], tmp_path / "rep", normalize=L, difference_vectors={"plural": np.ones(4)},
                        spectrum_delays=[0, 3])
    page = path.read_text(encoding="utf-8")
    # Self-contained: no script, no stylesheet link, nothing fetched from elsewhere.
    assert "<script" not in page.lower() and "<link" not in page.lower()
    assert not re.search(r'(src|href)="(https?:)?//', page)
    assert all(src.startswith("data:") for src in re.findall(r'<img[^>]*src="([^"]+)"', page))
    images = _images(page)
    # raw and normalised: memory, top-k, spectra, heat map; + property, relative, cosine
    assert len(images) == 2 * 4 + 3
    for svg in images:
        assert ET.fromstring(svg).tag.endswith("svg")
    # Metadata and counts per class.
    for text in ("LSTM cell", "GRU hidden", "carry", "nouns", "abc123", "delete-one-block jackknife"):
        assert text in page
    # The numbers behind the normalised memory curve equal a direct computation.
    rows = list(csv.reader((tmp_path / "rep/figures/memory_normalised.csv").open()))
    head = rows[0]
    col = head.index("GRU hidden: nouns")
    for row in rows[1:]:
        d = int(row[0])
        direct = np.linalg.svd(b.mean(d, "nouns") @ L, compute_uv=False).sum()
        assert float(row[col]) == pytest.approx(direct, rel=1e-3)
    assert "GRU hidden: nouns lower" in head
    # The same table is in the page.
    assert f"<td>{rows[1][col]}</td>" in page
    for name in ("memory_raw", "topk_normalised", "spectra_raw", "heatmap_normalised",
                 "property_memory", "relative_memory", "subspace_cosine"):
        for ext in ("png", "svg", "csv"):
            assert (tmp_path / "rep/figures" / f"{name}.{ext}").is_file()


def test_report_without_blocks_says_so(tmp_path):
    r = block_result()
    r.block_sums = r.block_counts = r.block_starts = None
    page = build_report([r], tmp_path, classes=["nouns"]).read_text()
    assert "no per-block sums" in page
    assert "No confidence bands" in page
    assert "verbs</td>" in page  # counts table lists every class, figures only nouns


def test_report_input_errors(tmp_path):
    r = block_result(E=4)
    with pytest.raises(ReportError, match="no results"):
        build_report([], tmp_path)
    with pytest.raises(ReportError, match="2 labels for 1 results"):
        build_report([r], tmp_path, labels=["a", "b"])
    with pytest.raises(ReportError, match="no class 'adjectives'"):
        build_report([r], tmp_path, classes=["adjectives"])
    with pytest.raises(ReportError, match="5-dimensional"):
        build_report([r], tmp_path, normalize=np.eye(5))
    with pytest.raises(ReportError, match=r"outside 0\.\.5"):
        build_report([r], tmp_path, spectrum_delays=[6])


def test_report_and_sentence_commands(tmp_path):
    a = block_result(D=5, H=4, E=3, seed=1)
    b = block_result(D=5, H=4, E=3, seed=2)
    a.save(tmp_path / "a.h5")
    b.save(tmp_path / "b.h5")
    L = _L(3)
    np.save(tmp_path / "L.npy", L)
    np.save(tmp_path / "v.npy", np.array([1.0, 0.0, -1.0]))
    model = _tiny_model()
    save_checkpoint(tmp_path / "lm.pt", model.module, model.vocab)
    runner = CliRunner()
    res = runner.invoke(main, ["report", str(tmp_path / "a.h5"), str(tmp_path / "b.h5"),
                               "--label", "first", "--label", "second", "--normalize",
                               str(tmp_path / "L.npy"), "--classes", "all,nouns",
                               "--difference", f"contrast={tmp_path / 'v.npy'}",
                               "--sentence", "the cat sat", "--model", str(tmp_path / "lm.pt"),
                               "--ci", "bootstrap", "--n-boot", "20", "--out", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    page = (tmp_path / "out/report.html").read_text()
    assert "second: nouns" in page and "Sentence view 1" in page and "contrast" in page
    assert "bootstrap" in page
    assert (tmp_path / "out/figures/sentence_1.png").is_file()

    res = runner.invoke(main, ["sentence", "--model", str(tmp_path / "lm.pt"), "the", "cat", "sat",
                               "on", "a", "mat", "--state", "hidden", "--out", str(tmp_path / "s.svg"),
                               "--csv", str(tmp_path / "s.csv")])
    assert res.exit_code == 0, res.output
    assert "a" in res.output.split("<unk>):")[-1]
    assert ET.parse(tmp_path / "s.svg").getroot().tag.endswith("svg")
    rows = list(csv.reader((tmp_path / "s.csv").open()))
    G = _autograd_pairs(model, model.vocab.encode("the cat sat on a mat".split()), "hidden")
    assert float(rows[1][3]) == pytest.approx(np.linalg.norm(G[0, 2]), rel=1e-5)
    assert rows[2][1] == ""  # k < t: no influence
    assert rows[0][5] == rows[5][0] == "<unk>"  # "a" is not in the vocabulary

    (tmp_path / "text.txt").write_text("the cat sat\non the mat\n")
    res = runner.invoke(main, ["sentence", "--model", str(tmp_path / "lm.pt"), "--text",
                               str(tmp_path / "text.txt"), "--start", "2", "--length", "4",
                               "--out", str(tmp_path / "span.png"), "--csv", str(tmp_path / "span.csv")])
    assert res.exit_code == 0, res.output
    assert next(csv.reader((tmp_path / "span.csv").open()))[1:] == ["sat", "<eos>", "on", "the"]

    res = runner.invoke(main, ["report", str(tmp_path / "a.h5"), "--sentence", "the cat",
                               "--out", str(tmp_path / "x")])
    assert res.exit_code != 0 and "--model" in res.output
    res = runner.invoke(main, ["report", str(tmp_path / "missing.h5"), "--out", str(tmp_path / "x")])
    assert res.exit_code != 0 and "not found" in res.output
    res = runner.invoke(main, ["report", str(tmp_path / "a.h5"), "--difference", "oops",
                               "--out", str(tmp_path / "x")])
    assert res.exit_code != 0 and "NAME=FILE" in res.output


def test_extra_figures_are_embedded_with_their_numbers(tmp_path):
    import base64

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0, 1, 2], [3, 1, 2])
    fig.savefig(tmp_path / "identity_memory.png")
    plt.close(fig)
    (tmp_path / "identity_memory.csv").write_text("delay,value\n0,3\n1,1\n2,2\n")
    block_result().save(tmp_path / "a.h5")
    res = CliRunner().invoke(main, [
        "report", str(tmp_path / "a.h5"), "--out", str(tmp_path / "out"), "--ci", "none",
        "--figure", f"{tmp_path / 'identity_memory.png'}::Identity memory::Made by the demo."])
    assert res.exit_code == 0, res.output
    page = (tmp_path / "out/report.html").read_text()
    png = base64.b64encode((tmp_path / "identity_memory.png").read_bytes()).decode()
    assert f'src="data:image/png;base64,{png}"' in page
    assert '<h2 id="extra_1">Identity memory</h2>' in page and "Made by the demo." in page
    assert "<td>delay</td>" in page or "<th>delay</th>" in page
    assert (tmp_path / "out/figures/extra_1.png").read_bytes() == \
        (tmp_path / "identity_memory.png").read_bytes()
    assert (tmp_path / "out/figures/extra_1.csv").is_file()
    # a carried raster gets an SVG too (like every figure), holding the very same pixels
    svg = ET.parse(tmp_path / "out/figures/extra_1.svg").getroot()
    image = svg.find("{http://www.w3.org/2000/svg}image")
    assert image.get("href") == f"data:image/png;base64,{png}"
    h, w = plt.imread(tmp_path / "identity_memory.png").shape[:2]
    assert (svg.get("width"), svg.get("height")) == (str(w), str(h)) == (image.get("width"), image.get("height"))
    assert 'href="figures/extra_1.svg">SVG</a>' in page
    bad = CliRunner().invoke(main, ["report", str(tmp_path / "a.h5"), "--out", str(tmp_path / "x"),
                                    "--figure", str(tmp_path / "missing.png")])
    assert bad.exit_code != 0 and "extra figure not found" in bad.output
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ReportError, match="unknown image type"):
        from stategrad.report import ExtraFigure

        build_report([block_result()], tmp_path / "y", extra_figures=[
            ExtraFigure(tmp_path / "notes.txt", "notes")])


def test_tables_and_csv_headers_have_no_tex_markup(tmp_path):
    a = block_result(D=6, H=5, E=4, seed=1)
    path = build_report([a], tmp_path / "rep", spectrum_delays=[0, 2], top_k=3)
    page = path.read_text(encoding="utf-8")
    head = next(csv.reader((tmp_path / "rep/figures/topk_raw.csv").open()))
    assert head[:4] == ["delay", "s_1", "s_1 lower", "s_1 upper"] and "s_3" in head
    for f in (tmp_path / "rep/figures").glob("*.csv"):
        assert "$" not in f.read_text(encoding="utf-8").splitlines()[0], f.name
    ths = re.findall(r"<th>(.*?)</th>", page)
    assert "s<sub>1</sub>" in ths and "s<sub>3</sub> upper" in ths
    assert not any("$" in t or "s_{" in t for t in ths)


def test_class_definitions_read_as_lists_and_run_tables_are_whole(tmp_path):
    defs = {"all": "every word", "nouns": {"tags": ["NN", "NNS"], "builtin": "ptb", "source": "tags.txt"},
            "verbs": {"words": [f"w{i}" for i in range(30)], "source": "verbs.txt"}}
    a = block_result(D=6, H=5, E=4, seed=1, metadata={"class_definitions": defs})
    page = build_report([a], tmp_path / "rep", spectrum_delays=[0, 2]).read_text(encoding="utf-8")
    counts = re.search(r'<table class="counts">.*?</table>', page, re.S).group(0)
    assert "{'" not in counts and "['" not in counts and "&#x27;" not in counts
    assert "<dt>tags</dt><dd>NN, NNS</dd>" in counts and "<dt>built-in</dt><dd>ptb</dd>" in counts
    assert "<dd>w0, w1, w2, w3, w4, w5, w6, w7, w8, w9, w10, w11, … (30 in all)</dd>" in counts
    assert "<td>every word</td>" in counts
    # neither the metadata nor the class table sits in a (clipping) scroll box
    for cls in ("kv", "counts"):
        assert f'<div class="scroll"><table class="{cls}">' not in page
        assert f'<table class="{cls}">' in page


def test_report_leads_with_identity_and_property_memory_of_a_class(tmp_path):
    from stategrad.analysis import identity_table

    r = block_result(D=6, H=5, E=4, seed=3)
    L = _L(4)
    W = np.random.default_rng(4).normal(size=(12, 4))
    words = {"nouns": [1, 2, 3], "verbs": [4, 5, 6, 7]}
    v = np.array([1.0, -0.5, 0.2, 0.3])
    path = build_report([r], tmp_path / "rep", normalize=L, difference_vectors={"p": v},
                        difference_class="verbs", identity=(W, words))
    page = path.read_text(encoding="utf-8")
    # The identity figure comes first, then the property figure, then the papers' ones.
    order = [page.index(t) for t in ("Identity memory per class", "Property memory",
                                     "Relative memory (as in the papers)", "words of class verbs")]
    assert order[:3] == sorted(order[:3])
    rows = list(csv.reader((tmp_path / "rep/figures/identity_memory.csv").open()))
    col = rows[0].index("verbs")
    want = identity_table(r, W, words, L).curve("verbs")
    assert [float(row[col]) for row in rows[1:]] == pytest.approx(list(want), rel=1e-3)
    # The property figure: |Gbar_d L n| / |Gbar_0 L n| of the class's mean gradients.
    n = np.linalg.solve(L, v)
    n /= np.linalg.norm(n)
    rows = list(csv.reader((tmp_path / "rep/figures/property_memory.csv").open()))
    col = rows[0].index("p")
    first = np.linalg.norm(r.mean(0, "verbs") @ L @ n)
    for row in rows[1:]:
        d = int(row[0])
        want = np.linalg.norm(r.mean(d, "verbs") @ L @ n) / first
        assert float(row[col]) == pytest.approx(want, rel=1e-3)


def test_report_leads_with_identity_memory_when_a_model_is_given(tmp_path):
    defs = {"all": "every word", "nouns": ["cat", "mat"], "verbs": {"tags": ["VB"]}}
    a = block_result(D=5, H=4, E=3, seed=1, metadata={"class_definitions": defs})
    a.save(tmp_path / "a.h5")
    model = _tiny_model()
    save_checkpoint(tmp_path / "lm.pt", model.module, model.vocab)
    runner = CliRunner()
    base = ["report", str(tmp_path / "a.h5"), "--n-boot", "20"]

    def page(*extra):
        res = runner.invoke(main, base + list(extra) + ["--out", str(tmp_path / "out")])
        assert res.exit_code == 0, res.output
        return res.output, (tmp_path / "out/report.html").read_text(encoding="utf-8")

    out, html = page("--model", str(tmp_path / "lm.pt"))
    # identity memory first, the papers' curves after it and named as theirs
    assert html.index("Identity memory per class") < html.index(
        "Memory curves (the papers")
    assert "Memory per class (the papers" in html
    # "verbs" is defined by tags, which without a POS map have no words: left out, said so
    assert "leaves out class 'verbs'" in out
    # with a POS map the tag-defined class has words too
    (tmp_path / "pos.txt").write_text("sat VB\non VB IN\ncat NN\n")
    out, _ = page("--model", str(tmp_path / "lm.pt"), "--pos-map", str(tmp_path / "pos.txt"))
    assert "leaves out" not in out
    rows = list(csv.reader((tmp_path / "out/figures/identity_memory.csv").open()))
    assert "verbs" in rows[0] and "nouns" in rows[0]
    _, html = page("--model", str(tmp_path / "lm.pt"), "--no-identity")
    assert "Identity memory per class" not in html
    _, html = page()  # no model: the papers' measure alone
    assert "Identity memory per class" not in html and "(the papers" in html
    # asked for explicitly, a class without words is an error naming it
    res = runner.invoke(main, base + ["--model", str(tmp_path / "lm.pt"), "--identity",
                                      "--out", str(tmp_path / "out")])
    assert res.exit_code != 0 and "verbs" in res.output and "Traceback" not in res.output
