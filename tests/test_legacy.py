"""The original's gradient directories: averages, per-class averages, SVs, exports."""

from __future__ import annotations

import collections

import numpy as np
import pytest
from click.testing import CliRunner

from stategrad import analysis, legacy
from stategrad.data import ClassSet, Vocabulary
from stategrad.gradients import GradientResult
from stategrad.legacy import LegacyError

H, E = 5, 3

POS_MAP = {
    "cat": ["NN"],
    "cats": ["NNS"],
    "runs": ["VBZ", "NNS"],  # multi-label: a noun and a verb
    "run": ["VB", "NN"],
    "the": ["DT"],
    "fast": ["JJ", "RB"],
}
NOUNS = ["NN", "NNS", "NNP", "NNPS"]
VERBS = ["VB", "VBZ", "VBD"]


def _write_pos_map(path):
    # the original's decorations: a python-list style line, a |-joined tag, a skipped line
    path.write_text(
        "cat NN\n"
        "cats ['NNS']\n"
        "runs ['VBZ', 'NNS']\n"
        "run VB|NN\n"
        "the DT\n"
        "fast JJ RB\n"
        "xyzzy not in list\n"
    )
    return path


def _fake_grad_dir(root, rng, timesteps=(0, 3), delays=(0, 1, 2)):
    """GRAD_DIR/timestep_<tau>/delay_<d>/<counter>.npy + mapping.txt, returning
    {delay: [(word, matrix), ...]} for a direct computation."""
    words = list(POS_MAP) + ["unknownword"]  # one word missing from the map
    truth = collections.defaultdict(list)
    for tau in timesteps:
        for d in delays:
            folder = root / f"timestep_{tau}" / f"delay_{d}"
            folder.mkdir(parents=True)
            lines = []
            for counter in range(7):
                word = words[rng.integers(len(words))]
                G = rng.normal(size=(H, E)).astype(np.float32)
                np.save(folder / f"{counter}.npy", G)
                lines.append(f"{counter}\t{word}\t{word}-{'x-' * d}\n")
                truth[d].append((word, G.astype(np.float64)))
            (folder / "mapping.txt").write_text("".join(lines))
    return truth


def _direct_mean(pairs, tags=None):
    sel = [G for w, G in pairs
           if tags is None or set(POS_MAP.get(w, [])).intersection(tags)]
    return np.mean(sel, axis=0), len(sel)


def test_averages_and_multilabel_class_averages_match_direct_computation(tmp_path):
    rng = np.random.default_rng(0)
    truth = _fake_grad_dir(tmp_path, rng)
    pos_map = {w: t for w, t in POS_MAP.items()}
    out = legacy.legacy_averages(tmp_path, 1, classes={"nouns": NOUNS, "verbs": VERBS},
                                 pos_map=pos_map)
    mean, n = _direct_mean(truth[1])
    np.testing.assert_allclose(out[None].mean, mean, atol=1e-12)
    assert out[None].count == n == 14 and out[None].total == 14
    for name, tags in (("nouns", NOUNS), ("verbs", VERBS)):
        m, k = _direct_mean(truth[1], tags)
        np.testing.assert_allclose(out[name].mean, m, atol=1e-12)
        assert out[name].count == k
    # a word with a noun and a verb tag counts for both classes
    n_runs = sum(1 for w, _ in truth[1] if w == "runs")
    n_nouns = sum(1 for w, _ in truth[1] if set(POS_MAP.get(w, [])) & set(NOUNS))
    assert out["nouns"].count == n_nouns and n_runs <= out["verbs"].count
    missing = sum(1 for w, _ in truth[1] if w == "unknownword")
    assert out["nouns"].missing_words == collections.Counter({"unknownword": missing} if missing else {})

    single = legacy.legacy_average(tmp_path, 2, class_tags=VERBS, class_name="verbs",
                                   pos_map=pos_map)
    np.testing.assert_allclose(single.mean, _direct_mean(truth[2], VERBS)[0], atol=1e-12)
    assert single.file_name() == "delay_2_avg_verbs.npy"
    path = legacy.save_legacy_average(single, tmp_path)
    np.testing.assert_array_equal(np.load(path), single.mean)


def test_npz_archives_give_the_same_averages(tmp_path):
    rng = np.random.default_rng(1)
    _fake_grad_dir(tmp_path, rng)
    before = legacy.legacy_averages(tmp_path, 2, classes={"nouns": NOUNS}, pos_map=POS_MAP,
                                    npz=False)
    for folder in tmp_path.glob("timestep_*/delay_2"):
        target = legacy.np2npz(folder, remove=True)
        with np.load(target) as data:
            assert data["arr_0"].shape == (7, H, E)
    assert not list(tmp_path.glob("timestep_*/delay_2/*.npy"))
    after = legacy.legacy_averages(tmp_path, 2, classes={"nouns": NOUNS}, pos_map=POS_MAP)
    for key in (None, "nouns"):
        np.testing.assert_allclose(after[key].mean, before[key].mean, atol=1e-12)
        assert after[key].count == before[key].count


def test_np2npz_stacks_in_numeric_order(tmp_path):
    for i in (0, 2, 10, 1):
        np.save(tmp_path / f"{i}.npy", np.full((2, 2), float(i)))
    with np.load(legacy.np2npz(tmp_path)) as data:
        assert data["arr_0"][:, 0, 0].tolist() == [0.0, 1.0, 2.0, 10.0]


def test_empty_class_and_bad_layouts_are_reported(tmp_path):
    rng = np.random.default_rng(2)
    _fake_grad_dir(tmp_path, rng, timesteps=(0,), delays=(0,))
    out = legacy.legacy_averages(tmp_path, 0, classes={"adverbs": ["WRB"]}, pos_map=POS_MAP)
    assert out["adverbs"].mean is None and out["adverbs"].count == 0
    with pytest.raises(LegacyError, match="no matrix at delay 0"):
        legacy.save_legacy_average(out["adverbs"], tmp_path)
    with pytest.raises(LegacyError, match="no delay_5 folder"):
        legacy.legacy_averages(tmp_path, 5)
    with pytest.raises(LegacyError, match="POS map"):
        legacy.legacy_averages(tmp_path, 0, classes={"nouns": NOUNS})
    (tmp_path / "timestep_0" / "delay_0" / "99.npy").write_bytes(
        (tmp_path / "timestep_0" / "delay_0" / "0.npy").read_bytes())
    with pytest.raises(LegacyError, match="counter 99"):
        legacy.legacy_averages(tmp_path, 0)


def test_legacy_svs_of_averaged_files(tmp_path):
    rng = np.random.default_rng(3)
    L = np.linalg.cholesky(np.cov(rng.normal(size=(E, 40))))
    np.save(tmp_path / "emb_D_norm_grad.npy", L)
    mats = {d: rng.normal(size=(H, E)) for d in (0, 1, 2, 10)}
    for d, G in mats.items():
        np.save(tmp_path / f"delay_{d}_avg.npy", G)
        np.save(tmp_path / f"delay_{d}_avg_nouns.npy", 2 * G)
    table = legacy.legacy_svs(tmp_path, tmp_path / "emb_D_norm_grad.npy", top=3)
    assert [r["delay"] for r in table.rows] == [0, 1, 2, 10]
    for r in table.rows:
        s = np.linalg.svd(mats[r["delay"]] @ L, compute_uv=False)
        np.testing.assert_allclose([r["sv_1"], r["sv_2"], r["sv_3"]], s[:3], rtol=1e-12)
        assert r["sum"] == pytest.approx(s.sum())
    nouns = legacy.legacy_svs(tmp_path, L, "nouns", top=3)
    assert nouns.rows[0]["sv_1"] == pytest.approx(2 * table.rows[0]["sv_1"])
    with pytest.raises(LegacyError, match="delay_<d>_avg_verbs"):
        legacy.legacy_svs(tmp_path, L, "verbs")


# --- writing the original's layout, and round trips -------------------------------------------


def _random_text_and_pairs(rng, vocab, T=30, D=4):
    tokens = rng.integers(0, len(vocab), size=T)
    pairs = [(t, d, rng.normal(size=(H, E))) for t in range(T) for d in range(D) if t + d < T]
    return tokens, pairs


def _result_from_pairs(tokens, pairs, class_set, D):
    C = len(class_set.names)
    sums = np.zeros((D, C, H, E))
    counts = np.zeros((D, C), dtype=np.int64)
    for t, d, G in pairs:
        member = class_set.membership[tokens[t]]
        sums[d, member] += G
        counts[d, member] += 1
    return GradientResult(sums=sums, counts=counts, classes=list(class_set.names),
                          vocab=[], metadata={})


def test_export_then_legacy_average_equals_result_mean(tmp_path):
    rng = np.random.default_rng(4)
    vocab = Vocabulary(tuple(POS_MAP) + ("<unk>",))
    tokens, pairs = _random_text_and_pairs(rng, vocab)
    class_tags = {"nouns": NOUNS, "verbs": VERBS}
    cs = ClassSet.from_tag_map(vocab, POS_MAP, class_tags)
    result = _result_from_pairs(tokens, pairs, cs, D=4)

    summary = legacy.export_original_layout(tmp_path / "grads", pairs, tokens, vocab,
                                            time_step=0)
    assert summary.matrices == len(pairs) and summary.per_delay[3] == 27
    for d in range(4):
        out = legacy.legacy_averages(tmp_path / "grads", d, classes=class_tags, pos_map=POS_MAP)
        np.testing.assert_allclose(out[None].mean, result.mean(d, "all"), atol=1e-12)
        assert out[None].count == result.count(d, "all")
        for name in class_tags:
            np.testing.assert_allclose(out[name].mean, result.mean(d, name), atol=1e-12)
            assert out[name].count == result.count(d, name)
        assert sum(out["nouns"].missing_words.values()) == int((tokens[: len(tokens) - d]
                                                                == vocab["<unk>"]).sum())


def test_export_mapping_format_and_counter_convention(tmp_path):
    vocab = Vocabulary(("a", "b", "c", "d"))
    tokens = np.array([0, 1, 2, 3, 0])
    mats = {(t, d): np.full((2, 2), 10.0 * t + d) for t in range(5) for d in range(3) if t + d < 5}
    # given out of order: the mapping still comes out in counter order
    legacy.export_original_layout(tmp_path, [(t, d, G) for (t, d), G in reversed(mats.items())],
                                  tokens, vocab)
    lines = (tmp_path / "delay_2" / "mapping.txt").read_text().splitlines()
    assert lines == ["2\ta\ta-b-c-", "3\tb\tb-c-d-", "4\tc\tc-d-a-"]
    assert (tmp_path / "delay_0" / "mapping.txt").read_text().splitlines()[0] == "0\ta\ta-"
    # counter = position of the state: the same counter across delays is the same state
    assert np.load(tmp_path / "delay_2" / "4.npy")[0, 0] == 22.0  # t = 2, d = 2
    assert np.load(tmp_path / "delay_1" / "4.npy")[0, 0] == 31.0  # t = 3, d = 1
    # np2npz order = mapping order, so the archive route agrees
    legacy.np2npz(tmp_path / "delay_2", remove=True)
    entries = list(legacy.iter_delay_matrices(tmp_path, 2))
    assert [(m.counter, m.word, G[0, 0]) for m, G in entries] == [
        (2, "a", 2.0), (3, "b", 12.0), (4, "c", 22.0)]
    with pytest.raises(LegacyError, match="outside the text"):
        legacy.export_original_layout(tmp_path / "x", [(4, 1, np.zeros((2, 2)))], tokens, vocab)
    with pytest.raises(LegacyError, match="two matrices"):
        legacy.export_original_layout(tmp_path / "y", [(0, 1, np.zeros((2, 2)))] * 2, tokens,
                                      vocab)


def test_result_averages_export_then_legacy_svs_equal_svd_table(tmp_path):
    rng = np.random.default_rng(5)
    counts = rng.integers(1, 9, size=(3, 2))
    counts[1, 1] = 0
    sums = rng.normal(size=(3, 2, H, E)) * counts[:, :, None, None]
    result = GradientResult(sums=sums, counts=counts, classes=["all", "nouns"], vocab=[],
                            metadata={})
    written = legacy.export_result_averages(result, tmp_path)
    assert sorted(p.name for p in written) == sorted(
        ["delay_0_avg.npy", "delay_1_avg.npy", "delay_2_avg.npy", "delay_0_avg_nouns.npy",
         "delay_2_avg_nouns.npy"])
    L = np.linalg.cholesky(np.cov(rng.normal(size=(E, 30))))
    for name, cls in ((None, "all"), ("nouns", "nouns")):
        ours = analysis.singular_value_table(result, normalize=L, classes=[cls], top=3)
        theirs = legacy.legacy_svs(tmp_path, L, name, top=3)
        expected = [r for r in ours.rows if r["count"]]
        assert [r["delay"] for r in theirs.rows] == [r["delay"] for r in expected]
        for a, b in zip(theirs.rows, expected, strict=True):
            for key in ("sv_1", "sv_2", "sv_3", "sum"):
                assert a[key] == pytest.approx(b[key], rel=1e-12)


def test_cli_legacy_average_and_svs(tmp_path):
    from stategrad.cli import main

    rng = np.random.default_rng(6)
    truth = _fake_grad_dir(tmp_path / "g", rng)
    (tmp_path / "nouns").write_text("NN\nNNS\nNNP\nNNPS\n")
    (tmp_path / "adverbs").write_text("WRB\n")
    pos = _write_pos_map(tmp_path / "pos.txt")
    runner = CliRunner()
    out = runner.invoke(main, ["legacy-average", str(tmp_path / "g"), "1", "--classes",
                               str(tmp_path / "nouns"), "--classes", str(tmp_path / "adverbs"),
                               "--pos-map", str(pos)])
    assert out.exit_code == 0, out.output
    np.testing.assert_allclose(np.load(tmp_path / "g" / "delay_1_avg_nouns.npy"),
                               _direct_mean(truth[1], NOUNS)[0], atol=1e-12)
    np.testing.assert_allclose(np.load(tmp_path / "g" / "delay_1_avg.npy"),
                               _direct_mean(truth[1])[0], atol=1e-12)
    assert "'adverbs': no matrix at delay 1" in out.output
    assert any(w == "unknownword" for w, _ in truth[1])  # the seed puts one in
    assert "not in the POS map" in out.output and "unknownword" in out.output

    L = np.eye(E) * 2.0
    np.save(tmp_path / "e_D_norm_grad.npy", L)
    out = runner.invoke(main, ["legacy-svs", str(tmp_path / "g"), str(tmp_path / "e_D_norm_grad.npy"),
                               "nouns", "--top", "2", "--csv", str(tmp_path / "s.csv")])
    assert out.exit_code == 0, out.output
    s = np.linalg.svd(_direct_mean(truth[1], NOUNS)[0] @ L, compute_uv=False)
    row = (tmp_path / "s.csv").read_text().splitlines()[1].split(",")
    assert row[:2] == ["nouns", "1"] and float(row[3]) == pytest.approx(s[0])
