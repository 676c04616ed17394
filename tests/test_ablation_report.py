"""The ablation in the report: the figure beside the memory curves, the correlation
table, the context-length curve, the sentence view's ablation map, `report --ablation`."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from stategrad.ablation import compute_ablation, compute_context_length
from stategrad.analysis import memory_ablation_correlation, memory_curve_arrays
from stategrad.cli import main
from stategrad.data import ClassSet, Vocabulary
from stategrad.gradients import compute_state_gradients
from stategrad.lm import RNNLM, LanguageModel, ModelSpec, save_checkpoint
from stategrad.report import build_report, sentence_map

torch.set_num_threads(1)
WORDS = ["<unk>", "<eos>"] + [f"w{i}" for i in range(10)]


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    d = tmp_path_factory.mktemp("rep")
    torch.manual_seed(1)
    module = RNNLM(ModelSpec(len(WORDS), 5, 6, init_scale=0.5)).eval()
    lm = LanguageModel(module, Vocabulary(WORDS))
    m = np.zeros((len(WORDS), 2), dtype=bool)
    m[:, 0] = True
    m[2:7, 1] = True
    classes = ClassSet(["all", "low"], m, {"all": "every word", "low": "w0-w4"})
    tokens = np.random.default_rng(0).integers(0, len(WORDS), 300)
    grads = compute_state_gradients(lm, tokens, max_delay=5, state="hidden", classes=classes,
                                    block_size=50)
    abl = compute_ablation(lm, tokens, max_distance=5, replace="unk", classes=classes,
                           block_size=50)
    ctx = compute_context_length(lm, tokens, max_context=4, classes=classes, block_size=50)
    grads.save(d / "g.h5")
    abl.save(d / "a.h5")
    save_checkpoint(d / "model.pt", module, Vocabulary(WORDS))
    return d, lm, grads, abl, ctx


def test_report_shows_ablation_beside_memory_with_correlations(made, tmp_path):
    d, lm, grads, abl, ctx = made
    smap = sentence_map(lm, "w1 w2 w3 w4", state="hidden", ablate="unk")
    assert smap.ablation.shape == (4, 4) and np.isnan(smap.ablation[1, 0])
    path = build_report([grads], tmp_path, ablation=abl, sentences=[smap])
    html = path.read_text()
    assert "Memory curves and context ablation" in html and "Correlation of the two" in html
    figs = tmp_path / "figures"
    for key in ("memory_vs_ablation", "memory_ablation_correlation", "sentence_1_ablation"):
        assert (figs / f"{key}.svg").is_file() and (figs / f"{key}.csv").is_file()
    with open(figs / "memory_ablation_correlation.csv") as f:
        rows = list(csv.DictReader(f))
    want = memory_ablation_correlation(memory_curve_arrays(grads, classes=["all", "low"]), abl)
    assert [r["class"] for r in rows] == ["all", "low"]
    for r, w in zip(rows, want.rows, strict=True):
        assert float(r["pearson"]) == pytest.approx(w["pearson"], rel=1e-3)
    # the correlation pairs gradient delay d - 1 with ablation distance d
    mem = memory_curve_arrays(grads, classes=["all"])["all"]
    g = mem.totals  # delays 0..4
    a = abl.mean("loss_increase", "all")  # distances 1..5
    assert want.rows[0]["pearson"] == pytest.approx(np.corrcoef(g, a)[0, 1])
    out2 = tmp_path / "ctx"
    build_report([grads], out2, ablation=ctx)
    assert (out2 / "figures" / "context_length.svg").is_file()


def test_report_command_takes_an_ablation_result(made, tmp_path):
    d, *_ = made
    r = CliRunner().invoke(main, ["report", str(d / "g.h5"), "--out", str(tmp_path / "r"),
                                  "--ablation", str(d / "a.h5"), "--sentence", "w1 w2 w3",
                                  "--model", str(d / "model.pt")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "r" / "figures" / "sentence_1_ablation.svg").is_file()
    r = CliRunner().invoke(main, ["report", str(d / "g.h5"), "--out", str(tmp_path / "x"),
                                  "--ablation", str(d / "g.h5")])
    assert r.exit_code == 1 and "not a stategrad ablation result" in r.output
