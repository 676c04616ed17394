"""Faults around the running state of `stategrad gradients`: planted pickles, damaged
files, kills at any moment, unwritable and full disks, bad --device."""

from __future__ import annotations

import collections
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from stategrad import Vocabulary, load_model
from stategrad.cli import main
from stategrad.data import read_tokens
from stategrad.gradients import EngineError, EngineOptions, InterruptedRun, StateGradientEngine
from stategrad.lm import RNNLM, ModelSpec, save_checkpoint

torch.set_num_threads(1)

WORDS = ["the", "cat", "dog", "sat", "ran", "on", "mat", "a", "big", "small"]
MAX_DELAY = 6
BLOCK = 32


@pytest.fixture()
def setup(tmp_path):
    vocab = Vocabulary.from_counts(collections.Counter({w: 20 - i for i, w in enumerate(WORDS)})
                                   | {"<eos>": 5})
    torch.manual_seed(0)
    module = RNNLM(ModelSpec(vocab_size=len(vocab), embedding_size=4, hidden_size=8, cell="lstm",
                             init_scale=0.5, num_layers=2))
    model = tmp_path / "model.pt"
    save_checkpoint(model, module, vocab, config={"num_steps": 5})
    text = tmp_path / "text.txt"
    rng = np.random.default_rng(3)
    text.write_text("".join(" ".join(rng.choice(WORDS, size=rng.integers(3, 9))) + "\n"
                            for _ in range(40)))
    return tmp_path, model, text


def args(model, text, out, *extra):
    return ["gradients", "--model", model, "--text", text, "--max-delay", MAX_DELAY,
            "--block-size", BLOCK, "--out", out, "--no-progress", "--threads", 1, *extra]


def run(argv):
    return CliRunner().invoke(main, [str(a) for a in argv], catch_exceptions=False,
                              prog_name="stategrad")


def datasets(path) -> dict[str, np.ndarray]:
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: out.__setitem__(name, obj[...])
                     if isinstance(obj, h5py.Dataset) else None)
    return out


def assert_same_result(a, b) -> None:
    da, db = datasets(a), datasets(b)
    assert sorted(da) == sorted(db)
    assert "blocks/sums" in da
    for name in da:
        assert np.array_equal(da[name], db[name]), name


def one_line_error(result) -> str:
    """The user sees a single 'Error:' line and no traceback."""
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(errors) == 1, result.output
    return errors[0]


def no_temp_files(folder: Path) -> bool:
    return not [p for p in folder.rglob("*") if ".tmp" in p.name or ".stategrad-probe" in p.name]


@pytest.fixture()
def reference(setup):
    tmp, model, text = setup
    out = tmp / "reference.h5"
    assert run(args(model, text, out)).exit_code == 0
    return out


def interrupted_state(model, text, checkpoint: Path, steps: int) -> None:
    """A genuine running state of the command's run at ``checkpoint``, as a killed run
    leaves it (same model identity, tokens, options and classes as the CLI uses)."""
    lm = load_model(model)
    tokens = read_tokens(text, lm.vocab)
    opts = EngineOptions(max_delay=MAX_DELAY, block_size=BLOCK)
    with torch.no_grad(), pytest.raises(InterruptedRun):
        StateGradientEngine(lm, tokens, opts).run(progress=False, checkpoint_path=checkpoint,
                                                  checkpoint_every=0, stop_after_steps=steps)


# --- 1. no unpickling of the running state -----------------------------------------------------

class _Payload:
    """Unpickling this creates ``marker``: code run from the file."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("writer", ["torch", "pickle"])
@pytest.mark.parametrize("via", ["partial", "--checkpoint"])
def test_planted_pickle_never_runs(setup, reference, writer, via):
    tmp, model, text = setup
    planted = tmp / "out.h5.partial" if via == "partial" else tmp / "elsewhere.state"
    marker = tmp / "marker"
    payload = {"k": 0, "x": _Payload(marker)}
    if writer == "torch":
        torch.save(payload, planted)
    else:
        import pickle

        planted.write_bytes(pickle.dumps(payload))
    # The payload is live: loading it the way the engine used to runs its code.
    with contextlib.suppress(Exception):  # a bare pickle then fails torch's magic number check
        torch.load(planted, weights_only=False)
    assert marker.exists()
    marker.unlink()

    extra = ["--checkpoint", planted] if via == "--checkpoint" else []
    r = run(args(model, text, tmp / "out.h5", *extra))
    assert r.exit_code == 0, r.output
    assert not marker.exists()
    warnings = [line for line in r.stderr.splitlines() if "running-state file" in line]
    assert len(warnings) == 1 and str(planted) in warnings[0] and "set aside" in warnings[0]
    assert Path(str(planted) + ".damaged").is_file() and not planted.exists()
    assert_same_result(tmp / "out.h5", reference)


# --- 2. damaged running state ----------------------------------------------------------------------

@pytest.mark.parametrize("damage", ["random", "truncated", "empty", "block"])
def test_damaged_running_state_is_set_aside_and_the_run_starts_afresh(setup, reference, damage):
    tmp, model, text = setup
    out = tmp / "out.h5"
    partial = tmp / "out.h5.partial"
    interrupted_state(model, text, partial, steps=100)
    blocks = tmp / "out.h5.partial.blocks"
    assert sorted(blocks.iterdir())  # a block closed before the interruption
    if damage == "random":
        partial.write_bytes(np.random.default_rng(0).bytes(5000))
    elif damage == "truncated":
        partial.write_bytes(partial.read_bytes()[: partial.stat().st_size // 2])
    elif damage == "empty":
        partial.write_bytes(b"")
    else:
        first = sorted(blocks.iterdir())[0]
        first.write_bytes(first.read_bytes()[:100])
    damaged_bytes = partial.read_bytes()

    r = run(args(model, text, out))
    assert r.exit_code == 0, r.output
    warnings = [line for line in r.stderr.splitlines() if "running-state file" in line]
    assert len(warnings) == 1 and "set aside as out.h5.partial.damaged" in warnings[0], r.stderr
    assert (tmp / "out.h5.partial.damaged").read_bytes() == damaged_bytes
    assert (tmp / "out.h5.partial.blocks.damaged").is_dir()
    assert not partial.exists() and not blocks.exists() and no_temp_files(tmp)
    assert_same_result(out, reference)


def test_a_good_running_state_resumes_bit_for_bit(setup, reference):
    tmp, model, text = setup
    interrupted_state(model, text, tmp / "out.h5.partial", steps=100)
    # What a kill in the middle of the next checkpoint's write leaves behind.
    (tmp / "out.h5.partial.tmp").write_bytes(b"half a file")
    (tmp / "out.h5.partial.blocks" / "block-9.tmp.npz").write_bytes(b"half a file")
    r = run(args(model, text, tmp / "out.h5"))
    assert r.exit_code == 0 and "resuming from" in r.output and "set aside" not in r.output
    assert_same_result(tmp / "out.h5", reference)
    assert not (tmp / "out.h5.partial").exists() and not (tmp / "out.h5.partial.blocks").exists()
    assert no_temp_files(tmp)


def test_running_state_of_another_run_is_refused_and_kept(setup):
    tmp, model, text = setup
    partial = tmp / "out.h5.partial"
    interrupted_state(model, text, partial, steps=40)
    before = partial.read_bytes()
    r = run(args(model, text, tmp / "out.h5", "--state", "hidden"))
    assert r.exit_code == 1
    line = one_line_error(r)
    assert "different run" in line and str(partial) in line and "state" in line
    assert partial.read_bytes() == before and not (tmp / "out.h5").exists()


def test_a_foreign_readable_file_is_refused_not_renamed(setup):
    tmp, model, text = setup
    before = model.read_bytes()
    r = run(args(model, text, tmp / "out.h5", "--checkpoint", model))
    assert r.exit_code == 1
    assert "not a stategrad running state" in one_line_error(r)
    assert model.read_bytes() == before and not Path(str(model) + ".damaged").exists()


def test_stale_block_files_without_a_running_state_are_not_reused(setup, reference):
    # A run killed before its first checkpoint leaves block files that nothing lists;
    # with other sums in them they must not enter a fresh run's result.
    tmp, model, text = setup
    interrupted_state(model, text, tmp / "out.h5.partial", steps=100)
    (tmp / "out.h5.partial").unlink()
    for block in (tmp / "out.h5.partial.blocks").iterdir():
        with np.load(block) as data:
            np.savez(block, sums=data["sums"] + 1, counts=data["counts"])
    assert run(args(model, text, tmp / "out.h5")).exit_code == 0
    assert_same_result(tmp / "out.h5", reference)


# --- 3. the running state outlives the result's write ----------------------------------------------

def test_running_state_is_removed_only_after_the_result_is_in_place(setup, reference, monkeypatch):
    from stategrad.gradients import GradientResult, ResultError

    tmp, model, text = setup
    out = tmp / "out.h5"
    partial = tmp / "out.h5.partial"
    seen = []
    real_save = GradientResult.save

    def failing_save(self, path):
        seen.append(partial.is_file())
        raise ResultError(f"could not write result {path}: simulated")

    monkeypatch.setattr(GradientResult, "save", failing_save)
    r = run(args(model, text, out, "--checkpoint-every", 0))
    assert r.exit_code == 1 and seen == [True]
    assert partial.is_file() and (tmp / "out.h5.partial.blocks").is_dir()

    def watching_save(self, path):
        seen.append(partial.is_file())
        return real_save(self, path)

    monkeypatch.setattr(GradientResult, "save", watching_save)
    r = run(args(model, text, out))
    assert r.exit_code == 0 and "resuming from" in r.output
    assert seen == [True, True] and not partial.exists()
    assert_same_result(out, reference)


# --- 4 and 5. unwritable and full disks --------------------------------------------------------------

@pytest.fixture()
def mount(tmp_path):
    mounted = []

    def do(name: str, options: str) -> Path:
        folder = tmp_path / name
        folder.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or done.returncode})")
        mounted.append(folder)
        return folder

    yield do
    for folder in mounted:
        if subprocess.run(["umount", str(folder)], capture_output=True).returncode:
            subprocess.run(["umount", "-l", str(folder)], check=False)  # busy: detach anyway


@pytest.mark.parametrize("where", ["out", "checkpoint", "missing subfolder"])
def test_unwritable_locations_are_refused_before_computing(setup, mount, monkeypatch, where):
    tmp, model, text = setup
    readonly = mount("ro", "ro,size=1m")
    out, extra = tmp / "out.h5", []
    if where == "out":
        out = readonly / "out.h5"
    elif where == "checkpoint":
        extra = ["--checkpoint", readonly / "state"]
    else:
        out = readonly / "new" / "deeper" / "out.h5"

    def never(*a, **k):
        raise AssertionError("computed although the output cannot be written")

    monkeypatch.setattr(StateGradientEngine, "run", never)
    r = run(args(model, text, out, *extra))
    assert r.exit_code == 1
    line = one_line_error(r)
    assert "no file can be created in" in line and "Read-only file system" in line
    assert str(out if where != "checkpoint" else readonly / "state") in line
    assert list(readonly.iterdir()) == [] and not (tmp / "out.h5").exists()


def fill(folder: Path) -> None:
    """Take every free byte of the file system of ``folder``."""
    with open(folder / "filler", "wb", buffering=0) as fh:  # unbuffered: nothing left to flush
        try:
            while fh.write(b"\0" * 4096):
                pass
        except OSError:
            pass


@pytest.mark.parametrize("first_write", ["block file", "running state"])
def test_full_disk_keeps_the_previous_running_state(setup, reference, mount, first_write):
    tmp, model, text = setup
    small = mount("small", "size=256k")
    out = tmp / "out.h5"
    partial = small / "state"
    # Checkpoints come at window ends (16 steps); block b closes once the oldest start in
    # flight (k - MAX_DELAY + 1) reaches (b + 1) * BLOCK.  Stopped at k=96, the next
    # checkpoint (k=112) first writes block 2; stopped at k=112, the next one (k=128)
    # closes no block and writes the running state first.
    interrupted_state(model, text, partial, steps=96 if first_write == "block file" else 100)
    before = partial.read_bytes()
    blocks_before = sorted(p.name for p in (small / "state.blocks").iterdir())
    fill(small)

    r = run(args(model, text, out, "--checkpoint", partial, "--checkpoint-every", 0))
    assert r.exit_code == 1
    line = one_line_error(r)
    assert "could not write the running state" in line and str(partial) in line
    assert partial.read_bytes() == before
    assert no_temp_files(small) and not out.exists()
    if first_write == "block file":
        assert "block-2.npz" in line and blocks_before == ["block-0.npz", "block-1.npz"]
    else:
        assert "bytes free" in line and blocks_before == ["block-0.npz", "block-1.npz",
                                                          "block-2.npz"]
    # With room again, the kept state resumes and ends as an uninterrupted run.
    (small / "filler").unlink()
    r = run(args(model, text, out, "--checkpoint", partial, "--checkpoint-every", 0))
    assert r.exit_code == 0 and "resuming from" in r.output, r.output
    assert_same_result(out, reference)
    assert list(small.iterdir()) == []


# --- 6. --device ----------------------------------------------------------------------------------

@pytest.mark.parametrize("device", ["tpu", "cuda:x", "gpu", ""])
def test_bad_device_is_one_line_naming_the_option(setup, device):
    tmp, model, text = setup
    r = run(args(model, text, tmp / "out.h5", "--device", device))
    assert r.exit_code == 2
    line = one_line_error(r)
    assert "--device" in line and repr(device) in line
    assert list(tmp.glob("out.h5*")) == []


def test_engine_names_an_unknown_device(setup):
    _, model, text = setup
    lm = load_model(model)
    tokens = read_tokens(text, lm.vocab)
    with pytest.raises(EngineError, match="unknown device 'tpu'"):
        StateGradientEngine(lm, tokens, EngineOptions(max_delay=2, device="tpu"))
    if not torch.cuda.is_available():
        with pytest.raises(EngineError, match="no CUDA"):
            StateGradientEngine(lm, tokens, EngineOptions(max_delay=2, device="cuda:0"))


# --- 7. kill -9 at random moments -----------------------------------------------------------------

def _position(partial: Path) -> int:
    """The step a running-state file has reached (read as plain data)."""
    return json.loads(torch.load(partial, weights_only=True)["meta"])["k"]


def _stat(path: Path):
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns)


def _run_and_kill(argv, partial: Path, out: Path, moment: str, rng, env) -> int:
    """Start the command and SIGKILL it at ``moment``: right after its n-th replacement of
    the running-state file (n random), at a random time after its first one (anywhere in
    the computation or a write), or once the result file appears.  Returns the exit
    status (-9 when killed)."""
    seen = _stat(partial)
    replacements = 0
    wanted = int(rng.integers(1, 12))
    delay = rng.uniform(0.0, 0.4)
    computing_since = None
    deadline = time.monotonic() + 120
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    while proc.poll() is None and time.monotonic() < deadline:
        now = _stat(partial)
        if now is not None and now != seen:
            seen = now
            replacements += 1
            computing_since = computing_since or time.monotonic()
        if (
            (moment == "replaced" and replacements >= wanted)
            or (moment == "random" and computing_since is not None
                and time.monotonic() - computing_since >= delay)
            # the result is written to a temp file ".NAME.XXXX.tmp" beside it, then renamed
            or (moment == "result" and any(out.parent.glob(f".{out.name}.*.tmp")))
        ):
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.0005)
    proc.wait(timeout=30)
    err = proc.stderr.read().decode()
    assert proc.returncode in (0, -signal.SIGKILL), err
    return proc.returncode


def test_kill_9_at_random_moments_then_rerun_ends_bit_for_bit(setup):
    tmp, model, text = setup
    # A longer text than the other tests, so that a run has many checkpoints to kill between.
    rng = np.random.default_rng(2024)
    text.write_text("".join(" ".join(rng.choice(WORDS, size=rng.integers(3, 9))) + "\n"
                            for _ in range(300)))
    reference = tmp / "reference.h5"
    assert run(args(model, text, reference)).exit_code == 0
    out = tmp / "out.h5"
    partial = tmp / "out.h5.partial"
    argv = [sys.executable, "-m", "stategrad", *map(str, args(model, text, out)),
            "--checkpoint-every", "0"]
    env = dict(os.environ)
    # Each start costs seconds of imports on a loaded machine: five kills, then the last run.
    moments = ["replaced", "random", "replaced", "random", "result"]
    positions = []
    for moment in moments:
        code = _run_and_kill(argv, partial, out, moment, rng, env)
        if code == 0:
            break
        assert partial.is_file(), f"killed ({moment}) without a running state to resume"
        positions.append(_position(partial))
    # The kills landed mid-run and every rerun went on from the last one's running state
    # (never started afresh), or the test proves nothing.
    assert len(positions) == len(moments) and positions[0] > 0
    assert all(a < b for a, b in zip(positions[:-2], positions[1:-1], strict=True)), positions
    assert positions[-1] >= positions[-2]  # the result's write comes after the last checkpoint
    assert not list(tmp.glob("*.damaged"))
    assert _run_and_kill(argv, partial, out, "never", rng, env) == 0
    assert_same_result(out, reference)
    with h5py.File(out, "r") as f:
        assert '"resumed": true' in f.attrs["metadata"]
    assert not partial.exists() and not (tmp / "out.h5.partial.blocks").exists()
    assert no_temp_files(tmp)


def test_distributed_slice_state_outlives_the_slice_result_write(setup, monkeypatch):
    from stategrad.gradients import GradientResult, compute_state_gradients_distributed

    tmp, model, text = setup
    lm = load_model(model)
    tokens = read_tokens(text, lm.vocab)
    parts = tmp / "out.h5.parts"
    seen = []
    real_save = GradientResult.save

    def watching_save(self, path):
        path = Path(path)
        if path.parent == parts:  # a slice's result: its running state must still be there
            seen.append((parts / ("-".join(path.stem.split("-")[:2]) + ".ckpt")).is_file())
        return real_save(self, path)

    monkeypatch.setattr(GradientResult, "save", watching_save)
    compute_state_gradients_distributed(lm, tokens, EngineOptions(max_delay=MAX_DELAY),
                                        out_path=tmp / "out.h5", n_slices=2, checkpoint_every=0)
    assert seen == [True, True] and not parts.exists()


@pytest.mark.parametrize("cell,sample_every", [("gru", None), ("rnn_tanh", 3), ("lstm", 2)])
def test_resume_of_each_cell_reads_back_plain_data(tmp_path, cell, sample_every):
    torch.manual_seed(1)
    module = RNNLM(ModelSpec(vocab_size=9, embedding_size=3, hidden_size=5, cell=cell,
                             init_scale=0.6, num_layers=2)).eval()
    tokens = np.random.default_rng(5).integers(0, 9, size=90)
    opts = EngineOptions(max_delay=7, state="hidden", window=4, block_size=16,
                         sample_every=sample_every)
    ck = tmp_path / "state"
    with torch.no_grad():
        whole = StateGradientEngine(module, tokens, opts).run(progress=False)
        with pytest.raises(InterruptedRun):
            StateGradientEngine(module, tokens, opts).run(
                progress=False, checkpoint_path=ck, checkpoint_every=0, stop_after_steps=37)
        # Nothing in the file needs unpickling beyond tensors and plain containers.
        assert torch.load(ck, weights_only=True)["format"] == "stategrad-engine-state"
        resumed = StateGradientEngine(module, tokens, opts).run(progress=False,
                                                                 checkpoint_path=ck)
    assert resumed.metadata["resumed"] is True and not ck.exists()
    np.testing.assert_array_equal(resumed.counts, whole.counts)
    np.testing.assert_array_equal(resumed.sums, whole.sums)
    np.testing.assert_array_equal(resumed.block_sums, whole.block_sums)
