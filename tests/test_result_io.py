"""Result files: per-delay block layout and reading, streaming writes, and safe writes
(full disk, read-only folders) for `gradients`, `merge` and `embedding-stats`."""

from __future__ import annotations

import collections
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from stategrad import Vocabulary
from stategrad.analysis.uncertainty import replicates, singular_values, sv_sum
from stategrad.cli import main
from stategrad.gradients import compute_state_gradients
from stategrad.gradients.result import BlockSums, GradientResult, ResultError, load_result
from stategrad.lm import RNNLM, ModelSpec, load_model, save_checkpoint

torch.set_num_threads(1)

WORDS = ["the", "cat", "dog", "sat", "ran", "on", "mat", "a"]
H, E, D = 6, 4, 5


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("model")
    vocab = Vocabulary.from_counts(collections.Counter({w: 10 - i for i, w in enumerate(WORDS)}
                                                      | {"<eos>": 5}))
    torch.manual_seed(0)
    module = RNNLM(ModelSpec(vocab_size=len(vocab), embedding_size=E, hidden_size=H, cell="lstm",
                             init_scale=0.5))
    ckpt = tmp / "model.pt"
    save_checkpoint(ckpt, module, vocab, config={"num_steps": 5})
    rng = np.random.default_rng(0)
    text = tmp / "text.txt"
    text.write_text("\n".join(" ".join(rng.choice(WORDS, 8)) for _ in range(12)) + "\n")
    class_map = tmp / "classes.tsv"
    class_map.write_text("cat\tanimals\ndog\tanimals\nsat\tverbs\nran\tverbs\n")
    return ckpt, text, class_map


@pytest.fixture(scope="module")
def blocked(model_files, tmp_path_factory):
    """A result with 5 blocks, computed by the engine and saved."""
    ckpt, text, class_map = model_files
    from stategrad.data import load_classes, read_tokens

    lm = load_model(ckpt)
    tokens = read_tokens(text, lm.vocab)
    classes = load_classes(lm.vocab, [], None, class_map=str(class_map))
    res = compute_state_gradients(lm, tokens, max_delay=D, classes=classes, block_size=20,
                                  dtype=torch.float64)
    path = tmp_path_factory.mktemp("res") / "blocked.h5"
    res.save(path)
    return res, path


# --- layout and lazy reading ----------------------------------------------------------------

def test_engine_keeps_closed_blocks_on_disk_and_they_add_up(blocked):
    res, _ = blocked
    assert isinstance(res.block_sums, BlockSums)  # not a (B, D, C, H, E) array in memory
    B = res.n_blocks
    assert B == len(res.block_starts) >= 4
    whole = np.asarray(res.block_sums)
    assert whole.shape == (B, D, len(res.classes), H, E)
    np.testing.assert_allclose(whole.sum(0), res.sums, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(res.block_counts.sum(0), res.counts)
    np.testing.assert_array_equal(res.block_delay(3), whole[:, 3])


def test_blocks_are_chunked_one_block_by_one_delay(blocked):
    res, path = blocked
    with h5py.File(path, "r") as f:
        ds = f["blocks/sums"]
        assert ds.shape == (res.n_blocks, D, len(res.classes), H, E)
        assert ds.chunks == (1, 1, len(res.classes), H, E)
        stored = ds[...]
    np.testing.assert_array_equal(stored, np.asarray(res.block_sums))


def test_jackknife_reads_one_delay_at_a_time_and_matches_numpy(blocked, monkeypatch):
    _, path = blocked
    with h5py.File(path, "r") as f:  # the reference reads the file directly
        S, n = f["sums"][...], f["counts"][...]
        bs, bn = f["blocks/sums"][...].astype(np.float64), f["blocks/counts"][...]
    res = load_result(path)
    assert isinstance(res.block_sums, BlockSums)
    B, C = bs.shape[0], bs.shape[2]
    largest = []
    original = h5py.Dataset.__getitem__

    def limited(self, key):
        out = original(self, key)
        if self.name == "/blocks/sums":
            largest.append(np.asarray(out).size)
        return out

    def refuse(*args, **kwargs):
        raise AssertionError("all blocks were read into memory")

    monkeypatch.setattr(h5py.Dataset, "__getitem__", limited)
    monkeypatch.setattr(BlockSums, "__array__", refuse)
    band = replicates(res, singular_values(), method="jackknife").derive(sv_sum)
    monkeypatch.undo()
    assert len(largest) == D and max(largest) == B * C * H * E  # one delay per read

    for d in (0, D - 1):
        for c in range(C):
            keep = [b for b in range(B) if bn[b, d, c] > 0 and n[d, c] - bn[b, d, c] > 0]
            theta = [np.linalg.svd((S[d, c] - bs[b, d, c]) / (n[d, c] - bn[b, d, c]),
                                   compute_uv=False).sum() for b in keep]
            if len(keep) < 2:
                assert np.isnan(band.se[d, c, 0])
                continue
            se = np.sqrt((len(keep) - 1) / len(keep) * np.sum((np.array(theta) - np.mean(theta)) ** 2))
            est = np.linalg.svd(S[d, c] / n[d, c], compute_uv=False).sum()
            np.testing.assert_allclose(band.estimate[d, c, 0], est, rtol=1e-10)
            np.testing.assert_allclose(band.se[d, c, 0], se, rtol=1e-6)


def test_bootstrap_replicates_from_lazy_blocks_match_numpy(blocked):
    _, path = blocked
    with h5py.File(path, "r") as f:
        bs, bn = f["blocks/sums"][...].astype(np.float64), f["blocks/counts"][...]
    res = load_result(path)
    reps = replicates(res, singular_values(), method="bootstrap", n_boot=20, seed=7)
    B = bs.shape[0]
    rng = np.random.default_rng(7)  # the documented resampling: B blocks with replacement
    weights = np.stack([np.bincount(rng.integers(0, B, B), minlength=B) for _ in range(20)])
    for d in (1, D - 1):
        for c in range(bs.shape[2]):
            for r in (0, 13):
                total = weights[r] @ bn[:, d, c]
                assert reps.valid[r, d, c] == (total > 0)
                if total > 0:
                    m = np.tensordot(weights[r], bs[:, d, c], axes=1) / total
                    np.testing.assert_allclose(reps.replicates[r, d, c],
                                               np.linalg.svd(m, compute_uv=False), rtol=1e-8,
                                               atol=1e-12)


def test_files_in_the_old_layout_still_load(blocked, tmp_path):
    res, path = blocked
    old = tmp_path / "old.h5"
    with h5py.File(path, "r") as src, h5py.File(old, "w") as dst:
        for key, value in src.attrs.items():
            dst.attrs[key] = value
        for name in ("sums", "counts", "delays", "classes", "vocab"):
            src.copy(name, dst)
        g = dst.create_group("blocks")
        sums = src["blocks/sums"][...]
        g.create_dataset("sums", data=sums, chunks=(1,) + sums.shape[1:], compression="gzip")
        for name in ("counts", "starts"):
            g.create_dataset(name, data=src["blocks/" + name][...])
    loaded = load_result(old)
    np.testing.assert_array_equal(loaded.block_sums, sums)
    np.testing.assert_array_equal(loaded.block_delay(2), sums[:, 2])


def test_merge_streams_blocks_in_start_order_even_onto_an_input(blocked, tmp_path):
    res, path = blocked
    whole = np.asarray(res.block_sums)
    first, second = tmp_path / "a.h5", tmp_path / "b.h5"
    cut = int(res.block_starts[2])  # the parts cover disjoint start positions, as slices do
    (cov,) = res.metadata["coverage"]
    (lo, hi), = cov["ranges"]
    for target, sl, rng in ((first, slice(0, 2), [lo, cut]), (second, slice(2, None), [cut, hi])):
        meta = dict(res.metadata, coverage=[dict(cov, ranges=[rng])])
        part = GradientResult(whole[sl].sum(0), res.block_counts[sl].sum(0), res.classes,
                              res.vocab, meta, block_sums=whole[sl],
                              block_counts=res.block_counts[sl], block_starts=res.block_starts[sl])
        part.save(target)
    r = CliRunner().invoke(main, ["merge", str(second), str(first), "--out", str(first)],
                           catch_exceptions=False)
    assert r.exit_code == 0, r.output
    merged = load_result(first)
    np.testing.assert_array_equal(merged.block_starts, res.block_starts)
    np.testing.assert_array_equal(np.asarray(merged.block_sums), whole)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.h5", "b.h5"]


def test_a_file_changed_after_loading_is_refused(blocked, tmp_path):
    res, _ = blocked
    path = tmp_path / "r.h5"
    res.save(path)
    loaded = load_result(path)
    loaded.block_delay(0)
    GradientResult(res.sums * 2, res.counts, res.classes, res.vocab, res.metadata,
                   block_sums=np.asarray(res.block_sums) * 2, block_counts=res.block_counts,
                   block_starts=res.block_starts).save(path)
    with pytest.raises(ResultError, match="changed after it was loaded"):
        loaded.block_delay(0)


# --- safe writes ------------------------------------------------------------------------------

@pytest.fixture()
def small_disk(tmp_path):
    """A 64 KiB tmpfs, unmounted afterwards; skipped where mounting is not permitted."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or 'not permitted'})")
    yield mnt
    subprocess.run(["umount", str(mnt)], check=False)


def _fill(folder: Path) -> None:
    """Leave no free space in ``folder``'s file system."""
    with open(folder / "filler", "wb", buffering=0) as handle:
        try:
            while True:
                handle.write(b"\0" * 4096)
        except OSError:
            pass


def _make_read_only(folder: Path) -> None:
    done = subprocess.run(["mount", "-o", "remount,ro", str(folder)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot remount read-only ({done.stderr.strip()})")


def _cli(args, cwd):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    return subprocess.run([sys.executable, "-m", "stategrad", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, env=env, timeout=300)


def _assert_refused(done, target: Path, before: bytes) -> None:
    assert done.returncode >= 0, f"killed by signal {-done.returncode}:\n{done.stderr}"
    assert done.returncode in (1, 2), done.stdout + done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("Error: ") and str(target.name) in lines[0], lines
    assert "Traceback" not in done.stderr + done.stdout
    assert target.read_bytes() == before
    assert not [p for p in target.parent.iterdir() if p.name.endswith(".tmp")]


def _commands(model_files, blocked, target):
    ckpt, text, class_map = model_files
    _, result_path = blocked
    return {
        "gradients": ["gradients", "--model", ckpt, "--text", text, "--max-delay", 40,
                      "--no-progress", "--block-size", 20, "--out", target],
        "merge": ["merge", result_path, "--out", target],
        "embedding-stats": ["embedding-stats", "--model", ckpt, "--text", text, "--out", target],
    }


@pytest.mark.parametrize("command", ["gradients", "merge", "embedding-stats"])
def test_a_full_disk_is_one_error_line_and_keeps_the_earlier_file(command, model_files, blocked,
                                                                  small_disk):
    target = small_disk / ("stats.npz" if command == "embedding-stats" else "g.h5")
    target.write_bytes(b"earlier good file")
    _fill(small_disk)
    done = _cli(_commands(model_files, blocked, target)[command], small_disk.parent)
    _assert_refused(done, target, b"earlier good file")


@pytest.mark.parametrize("command", ["gradients", "merge", "embedding-stats"])
def test_a_read_only_folder_is_one_error_line(command, model_files, blocked, small_disk):
    target = small_disk / ("stats.npz" if command == "embedding-stats" else "g.h5")
    target.write_bytes(b"earlier good file")
    _make_read_only(small_disk)
    args = _commands(model_files, blocked, target)[command]
    if command == "gradients":  # its running-state file goes elsewhere: only the result fails
        args += ["--checkpoint", small_disk.parent / "g.partial"]
    r = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    assert r.exit_code == 1, r.output
    # gradients finds the read-only folder before computing; the others when they write
    assert ("Error: could not write" in r.output or "Error: cannot write" in r.output) \
        and target.name in r.output
    assert "Traceback" not in r.output
    assert target.read_bytes() == b"earlier good file"
