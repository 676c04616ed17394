"""No result silently wrong: coverage records and `merge`, `--normalize` model checks,
NaN results, unknown tags in class definitions."""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
import sys
from collections import Counter

import h5py
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from stategrad import Vocabulary, load_result
from stategrad.analysis import AnalysisError, spectrum
from stategrad.cli import main
from stategrad.data import ClassError, ClassWarning, load_classes
from stategrad.gradients import EngineOptions, GradientResult, ResultError, union_coverage
from stategrad.lm import RNNLM, ModelSpec, load_model, save_checkpoint

torch.set_num_threads(1)

WORDS = ["the", "cat", "dog", "sat", "ran", "on", "mat", "a"]
N_LINES = 30  # about 150 tokens


def _model(path, seed):
    vocab = Vocabulary.from_counts(Counter({w: 10 - i for i, w in enumerate(WORDS)} | {"<eos>": 5}))
    torch.manual_seed(seed)
    module = RNNLM(ModelSpec(vocab_size=len(vocab), embedding_size=3, hidden_size=4, cell="lstm",
                             init_scale=0.5))
    save_checkpoint(path, module, vocab, config={"num_steps": 5})
    return path


def _text(path, seed):
    rng = np.random.default_rng(seed)
    path.write_text("".join(" ".join(rng.choice(WORDS, size=4)) + "\n" for _ in range(N_LINES)))
    return path


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("integrity")
    env = {"tmp": tmp, "model": _model(tmp / "a.pt", 0), "other": _model(tmp / "b.pt", 1),
           "text": _text(tmp / "text.txt", 0), "text2": _text(tmp / "text2.txt", 1)}
    env["whole"] = gradients(env, tmp / "whole.h5")
    for name, (a, b) in {"s1": (0, 50), "s2": (50, 90), "s3": (90, None), "late": (40, 70)}.items():
        env[name] = gradients(env, tmp / f"{name}.h5", "--start", a, *(["--stop", b] if b else []))
    return env


def run(args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False,
                              prog_name="stategrad")


def gradients(env, out, *extra, text=None):
    r = run(["gradients", "--model", env["model"], "--text", text or env["text"], "--max-delay", 4,
             "--dtype", "float64", "--no-progress", "--out", out, *extra])
    assert r.exit_code == 0, r.output
    return out


def one_error_line(r, *names):
    """A failed command: exit 1 or 2, one line on stderr naming each of ``names``, no traceback."""
    assert r.exit_code in (1, 2), r.output
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert "Traceback" not in r.output
    error = [ln for ln in lines if ln.startswith("Error")]
    assert len(error) == 1, r.stderr
    for name in names:
        assert str(name) in error[0], error[0]
    return error[0]


def no_leftovers(path):
    assert not path.exists()
    assert not list(path.parent.glob(path.name + "*.tmp"))


# --- merge and coverage -------------------------------------------------------------------

def test_a_result_records_the_start_positions_it_covers(env):
    whole, s2 = load_result(env["whole"]), load_result(env["s2"])
    n = whole.metadata["text"]["tokens"]
    (entry,) = whole.metadata["coverage"]
    assert entry["ranges"] == [[0, n]] and entry["sampling"] == {"rule": "all"}
    assert entry["text"] == whole.metadata["text"]["sha256"]
    assert s2.metadata["coverage"][0]["ranges"] == [[50, 90]]
    # every start position of the text is counted once at delay 0
    assert whole.counts[0, 0] == n
    assert "start positions [50, 90) of text" in run(["inspect", env["s2"]]).output


@pytest.mark.parametrize("order", list(itertools.permutations(["s1", "s2", "s3"])))
def test_three_slices_merge_in_any_order_to_the_single_run(env, order, tmp_path):
    first, second, third = (env[k] for k in order)
    r = run(["merge", first, second, "--out", tmp_path / "ab.h5"])
    assert r.exit_code == 0, r.output
    r = run(["merge", tmp_path / "ab.h5", third, "--out", tmp_path / "abc.h5"])
    assert r.exit_code == 0, r.output
    whole, merged = load_result(env["whole"]), load_result(tmp_path / "abc.h5")
    np.testing.assert_array_equal(merged.counts, whole.counts)
    np.testing.assert_allclose(merged.sums, whole.sums, rtol=1e-10, atol=1e-14)
    assert merged.metadata["coverage"][0]["ranges"] == whole.metadata["coverage"][0]["ranges"]
    # a fourth result overlapping the merged three is refused, naming both files and ranges
    r = run(["merge", tmp_path / "abc.h5", env["late"], "--out", tmp_path / "x.h5"])
    line = one_error_line(r, "abc.h5", "late.h5", "[40, 70)")
    assert "overlap" in line
    no_leftovers(tmp_path / "x.h5")


def test_overlapping_slices_are_refused(env, tmp_path):
    r = run(["merge", env["s1"], env["late"], "--out", tmp_path / "m.h5"])
    one_error_line(r, "s1.h5", "late.h5", "[0, 50)", "[40, 70)", "[40, 50)")
    no_leftovers(tmp_path / "m.h5")
    with pytest.raises(ResultError, match=r"\[40, 50\)"):
        load_result(env["s1"]).merge(load_result(env["late"]))


def test_the_same_file_twice_is_refused(env, tmp_path):
    r = run(["merge", env["s1"], env["s1"], "--out", tmp_path / "m.h5"])
    one_error_line(r, "s1.h5", "same file")
    copy = tmp_path / "copy.h5"
    shutil.copy(env["s1"], copy)
    r = run(["merge", env["s1"], copy, "--out", tmp_path / "m.h5"])
    one_error_line(r, "s1.h5", "copy.h5", "[0, 50)")
    no_leftovers(tmp_path / "m.h5")


def test_results_of_different_texts_do_not_overlap(env, tmp_path):
    other = gradients(env, tmp_path / "t2.h5", text=env["text2"])
    r = run(["merge", env["whole"], other, "--out", tmp_path / "m.h5"])
    assert r.exit_code == 0, r.output
    m, a, b = (load_result(p) for p in (tmp_path / "m.h5", env["whole"], other))
    np.testing.assert_array_equal(m.counts, a.counts + b.counts)
    assert sorted(e["text"] for e in m.metadata["coverage"]) == sorted(
        [a.metadata["text"]["sha256"], b.metadata["text"]["sha256"]])


def _strip_coverage(src, dst):
    shutil.copy(src, dst)
    with h5py.File(dst, "r+") as f:
        meta = json.loads(f.attrs["metadata"])
        del meta["coverage"]
        f.attrs["metadata"] = json.dumps(meta)
    return dst


def test_results_without_coverage_need_an_explicit_override(env, tmp_path):
    old = _strip_coverage(env["s2"], tmp_path / "old.h5")
    r = run(["merge", env["s1"], old, "--out", tmp_path / "m.h5"])
    one_error_line(r, "old.h5", "--allow-unknown-coverage")
    no_leftovers(tmp_path / "m.h5")
    r = run(["merge", env["s1"], old, "--out", tmp_path / "m.h5", "--allow-unknown-coverage"])
    assert r.exit_code == 0, r.output
    assert "WARNING" in r.stderr and "old.h5" in r.stderr
    merged = load_result(tmp_path / "m.h5")
    assert merged.metadata["coverage_unknown"] is True and "coverage" not in merged.metadata
    # unknown stays unknown: merging the output again needs the override again
    r = run(["merge", tmp_path / "m.h5", env["s3"], "--out", tmp_path / "n.h5"])
    one_error_line(r, "m.h5", "--allow-unknown-coverage")


def test_sampled_runs_record_their_rule_and_overlap_all_the_same(env, tmp_path):
    every = gradients(env, tmp_path / "every.h5", "--sample-every", 3, "--stop", 60)
    frac = gradients(env, tmp_path / "frac.h5", "--sample-fraction", 0.5, "--seed", 7,
                     "--start", 30, "--stop", 80)
    rules = [load_result(p).metadata["coverage"][0]["sampling"] for p in (every, frac)]
    assert rules == [{"rule": "every", "every": 3},
                     {"rule": "fraction", "fraction": 0.5, "seed": 7}]
    one_error_line(run(["merge", every, frac, "--out", tmp_path / "m.h5"]), "[30, 60)")
    # inspect's text output says how each was sampled and which slice it holds
    for path, sampling, piece in ((every, "one start position in 3", "[0, 60)"),
                                  (frac, "fraction 0.5 of start positions (seed 7)", "[30, 80)")):
        r = run(["inspect", path])
        assert r.exit_code == 0, r.output
        used = int(load_result(path).counts[0, 0])
        assert "sampling: " in r.output and sampling in r.output
        assert f"{used:,} start positions used" in r.output
        assert f"slice: start positions {piece}" in r.output


def test_union_of_coverage_joins_ranges_of_one_text_and_rule():
    cov = lambda ranges, rule="all", text="t": [  # noqa: E731
        {"text": text, "tokens": 9, "sampling": {"rule": rule}, "ranges": ranges}]
    joined = union_coverage(union_coverage(cov([[20, 30]]), cov([[0, 10]])), cov([[10, 20]]))
    assert joined == cov([[0, 30]])
    both = union_coverage(cov([[0, 10]]), cov([[10, 20]], rule="every"))
    assert [e["ranges"] for e in both] == [[[0, 10]], [[10, 20]]]
    assert len(union_coverage(cov([[0, 10]]), cov([[0, 10]], text="u"))) == 2


def test_a_distributed_run_records_what_its_slices_covered(env, tmp_path):
    from stategrad.data import read_tokens
    from stategrad.gradients import compute_state_gradients_distributed

    lm = load_model(env["model"])
    tokens = read_tokens(env["text"], lm.vocab)
    run_ = compute_state_gradients_distributed(
        lm, tokens, EngineOptions(max_delay=4, dtype=torch.float64), out_path=tmp_path / "d.h5",
        start=10, stop=90, n_slices=3, progress=False)
    meta = load_result(tmp_path / "d.h5").metadata
    assert len(run_.slices) >= 2  # the coverage is that of several slices joined
    assert meta["coverage"][0]["ranges"] == [[10, 90]]
    assert meta["coverage"][0]["text"] == load_result(env["whole"]).metadata["text"]["sha256"]
    one_error_line(run(["merge", tmp_path / "d.h5", env["s1"], "--out", tmp_path / "m.h5"]),
                   "d.h5", "s1.h5", "[10, 50)")


# --- --normalize: the statistics of the analysed model --------------------------------------

@pytest.fixture(scope="module")
def stats(env):
    tmp = env["tmp"]
    for name in ("model", "other"):
        r = run(["embedding-stats", "--model", env[name], "--text", env["text"],
                 "--out", tmp / f"stats_{name}.npz"])
        assert r.exit_code == 0, r.output
    return tmp / "stats_model.npz", tmp / "stats_other.npz"


def _commands(env, tmp):
    """Every command that takes --normalize, without the option itself."""
    vector = tmp / "v.npy"
    np.save(vector, np.array([1.0, -0.5, 0.25]))
    return {
        "svd": ["svd", env["whole"], "--top", 3],
        "memory": ["memory", env["whole"]],
        "relative-memory": ["relative-memory", env["whole"], "--vector", vector, "--top-k", 2],
        "report": ["report", env["whole"], "--out", tmp / "report", "--ci", "none",
                   "--top-k", 3],
        "sentence": ["sentence", "--model", env["model"], "the cat sat", "--out", tmp / "s.png"],
    }


@pytest.mark.parametrize("command", ["svd", "memory", "relative-memory", "report", "sentence"])
def test_statistics_of_another_model_are_refused_unless_forced(env, stats, command, tmp_path):
    args = _commands(env, tmp_path)[command]
    line = one_error_line(run(args + ["--normalize", stats[1]]), "stats_other.npz")
    assert "another model" in line and "--force" in line
    r = run(args + ["--normalize", stats[1], "--force"])
    assert r.exit_code == 0, r.output
    assert "WARNING" in r.stderr and "stats_other.npz" in r.stderr
    r = run(args + ["--normalize", stats[0]])
    assert r.exit_code == 0, r.output
    assert "warning" not in r.stderr.lower()


def test_memory_normalised_with_the_right_statistics_matches_numpy(env, stats, tmp_path):
    r = run(["memory", env["whole"], "--normalize", stats[0], "--json", tmp_path / "m.json"])
    assert r.exit_code == 0, r.output
    rows = [r for r in json.loads((tmp_path / "m.json").read_text())["curves"] if r["class"] == "all"]
    with np.load(stats[0]) as s:
        L = s["cholesky"]
    with h5py.File(env["whole"]) as f:
        sums, counts = f["sums"][...], f["counts"][...]
    expected = [np.linalg.svd(sums[d, 0] / counts[d, 0] @ L, compute_uv=False).sum()
                for d in range(len(counts))]
    np.testing.assert_allclose([r["sum"] for r in rows], expected, rtol=1e-10)


def test_a_bare_L_is_accepted_with_a_warning_that_it_cannot_be_checked(env, stats, tmp_path):
    with np.load(stats[1]) as s:  # another model's L: a bare .npy cannot tell
        np.save(tmp_path / "L.npy", s["cholesky"])
    r = run(["memory", env["whole"], "--normalize", tmp_path / "L.npy"])
    assert r.exit_code == 0, r.output
    assert "L.npy" in r.stderr and "cannot check" in r.stderr


@pytest.mark.parametrize("bad, what", [
    (np.zeros((3, 3)), "all zero"),
    (np.array([[1.0, 0, 0], [1.0, 0, 0], [0, 0, 1.0]]), "singular"),
    (np.array([[1.0, 0, 0], [0, np.nan, 0], [0, 0, 1.0]]), "NaN"),
    (np.eye(4), "4 x 4"),
    (np.ones(3), "square"),
])
@pytest.mark.parametrize("command", ["svd", "memory", "sentence"])
def test_an_unusable_L_is_an_error_naming_the_file(env, tmp_path, bad, what, command):
    np.save(tmp_path / "bad_L.npy", bad)
    args = _commands(env, tmp_path)[command]
    one_error_line(run(args + ["--normalize", tmp_path / "bad_L.npy"]), "bad_L.npy", what)


def test_the_report_checks_every_result_and_the_sentence_model(env, stats, tmp_path):
    r = run(["report", env["whole"], "--normalize", stats[0], "--out", tmp_path / "r",
             "--ci", "none", "--sentence", "the cat", "--model", env["other"]])
    one_error_line(r, "stats_model.npz", "b.pt")


# --- NaN results --------------------------------------------------------------------------

def test_a_result_holding_nan_is_one_line_naming_file_delay_and_class(env, tmp_path):
    bad = tmp_path / "nan.h5"
    shutil.copy(env["whole"], bad)
    with h5py.File(bad, "r+") as f:
        sums = f["sums"][...]
        sums[2, 0, 1, 1] = np.nan
        f["sums"][...] = sums
    for command in ("memory", "svd"):
        one_error_line(run([command, bad]), "nan.h5", "delay 2", "'all'", "NaN")
    one_error_line(run(["report", bad, "--out", tmp_path / "r"]), "nan.h5", "delay 2")
    res = load_result(bad)
    with pytest.raises(AnalysisError, match="delay 2, class 'all'"):
        spectrum(res, 2)


def test_nan_in_a_block_is_found_too(env, tmp_path):
    blocks = gradients(env, tmp_path / "b.h5", "--block-size", 40)
    with h5py.File(blocks, "r+") as f:
        s = f["blocks/sums"][...]
        s[1, 3, 0, 0, 0] = np.inf
        f["blocks/sums"][...] = s
    one_error_line(run(["memory", blocks, "--ci", "jackknife"]), "b.h5", "delay 3", "block 1")


def test_the_api_refuses_nan_instead_of_a_linalg_error():
    sums = np.ones((3, 1, 2, 2))
    sums[1] = np.nan
    res = GradientResult(sums, np.ones((3, 1), dtype=np.int64), ["all"], [])
    from stategrad.analysis import memory_curves

    with pytest.raises(AnalysisError, match="delay 1"):
        memory_curves(res)


# --- unknown tags in class definitions ------------------------------------------------------

VOCAB = Vocabulary(["the", "cat", "sat", "dog", "<unk>", "<eos>"])


def test_a_pos_map_whose_tags_are_all_unknown_is_an_error():
    with pytest.raises(ClassError, match="every class is empty") as exc, \
            pytest.warns(ClassWarning, match="FOO"):
        load_classes(VOCAB, "ptb", {"the": ["FOO"], "cat": ["BAR"], "sat": ["FOO"]})
    assert "BAR" in str(exc.value) and "FOO" in str(exc.value)


def test_some_unknown_tags_warn_naming_them():
    with pytest.warns(ClassWarning, match="ZZZ") as caught:
        cs = load_classes(VOCAB, "ptb:nouns+verbs", {"the": ["DT"], "cat": ["NN"], "sat": ["VBD"],
                                                     "dog": ["ZZZ"]})
    assert cs.names == ["all", "nouns", "verbs"]
    assert cs.membership[VOCAB.get("cat"), 1] and not cs.membership[VOCAB.get("dog"), 1:].any()
    assert not any("DT" in str(w.message) for w in caught)  # a PTB tag the subset leaves out


def test_a_class_file_with_an_unknown_tag_warns_naming_file_and_tag(tmp_path):
    nouns = tmp_path / "nouns.txt"
    nouns.write_text("NN\nNNX\n")
    with pytest.warns(ClassWarning, match=r"nouns\.txt.*NNX"):
        cs = load_classes(VOCAB, [str(nouns)], {"cat": ["NN"], "dog": ["NN"]})
    assert cs.membership[:, 1].sum() == 2


def test_show_classes_warns_and_refuses_on_the_command_line(tmp_path):
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("".join(f"{w}\t{i}\n" for i, w in enumerate(VOCAB.words)))
    bad = tmp_path / "map.txt"
    bad.write_text("the FOO\ncat BAR\n")
    r = run(["show-classes", "--vocab", vocab, "--classes", "ptb", "--pos-map", bad])
    one_error_line(r, "every class is empty", "FOO", "BAR")
    some = tmp_path / "some.txt"
    some.write_text("the DT\ncat NN\ndog QQQ\n")
    r = run(["show-classes", "--vocab", vocab, "--classes", "ptb:nouns+determiners",
             "--pos-map", some])
    assert r.exit_code == 0, r.output
    assert "QQQ" in r.stderr and "some.txt" in r.stderr


def test_a_real_process_prints_one_line_and_no_traceback(env, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "stategrad", "merge", str(env["s1"]),
                           str(env["late"]), "--out", str(tmp_path / "m.h5")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "[40, 50)" in lines[0] and "Traceback" not in proc.stderr
    no_leftovers(tmp_path / "m.h5")
