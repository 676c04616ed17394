"""`stategrad ablation`, `ablation-merge`, `ablation-inspect`: outputs, slices, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from stategrad.ablation import load_ablation
from stategrad.cli import main
from stategrad.data import Vocabulary
from stategrad.lm import RNNLM, ModelSpec, save_checkpoint

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("abl")
    words = ["<unk>", "<eos>"] + [f"w{i}" for i in range(12)]
    torch.manual_seed(0)
    module = RNNLM(ModelSpec(len(words), 6, 8, cell="lstm", init_scale=0.4)).eval()
    save_checkpoint(d / "model.pt", module, Vocabulary(words))
    rng = np.random.default_rng(0)
    lines = [" ".join(f"w{i}" for i in rng.integers(0, 12, 9)) for _ in range(30)]
    (d / "text.txt").write_text("\n".join(lines) + "\n")
    (d / "nouns.txt").write_text("w0\nw1\nw2\nw3\n")
    return d


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_ablation_writes_result_json_and_slices_merge(setup, tmp_path):
    d = setup
    base = ["ablation", "--model", d / "model.pt", "--text", d / "text.txt", "--max-distance", 3,
            "--class-words", d / "nouns.txt", "--replace", "random", "--block-size", 50]
    r = run(*base, "--out", tmp_path / "all.h5", "--json", tmp_path / "all.json",
            "--ci", "jackknife")
    assert r.exit_code == 0, r.output
    rows = json.loads((tmp_path / "all.json").read_text())
    assert {r["class"] for r in rows} == {"all", "nouns"}
    assert set(rows[0]) == {"class", "distance", "count", "loss_increase", "kl",
                            "loss_increase_lower", "loss_increase_upper", "kl_lower", "kl_upper"}
    assert not (tmp_path / "all.h5.partial").exists()
    assert run(*base, "--stop", 120, "--out", tmp_path / "a.h5").exit_code == 0
    assert run(*base, "--slice-start", 120, "--out", tmp_path / "b.h5").exit_code == 0
    r = run("ablation-merge", tmp_path / "a.h5", tmp_path / "b.h5", "--out", tmp_path / "m.h5")
    assert r.exit_code == 0, r.output
    whole, merged = load_ablation(tmp_path / "all.h5"), load_ablation(tmp_path / "m.h5")
    np.testing.assert_array_equal(whole.counts, merged.counts)
    np.testing.assert_allclose(whole.values, merged.values, rtol=1e-5, atol=1e-5)
    r = run("ablation-merge", tmp_path / "a.h5", tmp_path / "m.h5", "--out", tmp_path / "x.h5")
    assert r.exit_code == 1 and "overlapping" in r.output and not (tmp_path / "x.h5").exists()
    r = run("ablation-inspect", tmp_path / "m.h5")
    assert r.exit_code == 0 and "random" in r.output and "nouns" in r.output


def test_context_length_mode(setup, tmp_path):
    d = setup
    r = run("ablation", "--model", d / "model.pt", "--text", d / "text.txt", "--context-length",
            "--max-context", 4, "--out", tmp_path / "c.h5", "--json", tmp_path / "c.json")
    assert r.exit_code == 0, r.output
    r = run("ablation", "--model", d / "model.pt", "--text", d / "text.txt", "--context-length",
            "--max-context", 4, "--context-order", "shuffle", "--out", tmp_path / "s.h5")
    assert r.exit_code == 0, r.output
    rows = json.loads((tmp_path / "c.json").read_text())
    assert [r["context"] for r in rows] == [0, 1, 2, 3, 4]
    assert len({r["count"] for r in rows}) == 1  # every position has every context length
    assert load_ablation(tmp_path / "s.h5").metadata["replace"] == "shuffle"


@pytest.mark.parametrize("args,message", [
    (["--max-distance", 2, "--replace", "zero"], "zero"),
    ([], "--max-distance"),
    (["--max-distance", 2, "--ci", "jackknife"], "--block-size"),
    (["--max-distance", 2, "--start", 5, "--stop", 5], "not after"),
    (["--max-distance", 2, "--start", 100000], "past the end"),
    (["--context-length"], "--max-context"),
])
def test_bad_options_give_one_error_line_and_no_file(setup, tmp_path, args, message):
    d = setup
    r = run("ablation", "--model", d / "model.pt", "--text", d / "text.txt",
            "--out", tmp_path / "o.h5", *args)
    assert r.exit_code != 0 and message in r.output
    assert "Traceback" not in r.output
    assert not (tmp_path / "o.h5").exists()


def test_a_model_file_that_is_not_one_is_named(setup, tmp_path):
    (tmp_path / "bad.pt").write_bytes(b"nonsense")
    r = run("ablation", "--model", tmp_path / "bad.pt", "--text", setup / "text.txt",
            "--max-distance", 2, "--out", tmp_path / "o.h5")
    assert r.exit_code == 1 and "bad.pt" in r.output and "Traceback" not in r.output
