"""Faults of `stategrad train`: kill -9 at any moment, Ctrl-C, divergence, bad input, disks.

The kill tests run the `train` command in forked child processes (the same entry point
as the `stategrad` script, without paying the interpreter and torch start-up for every
kill on a small machine) and kill them with SIGKILL: at seeded random moments, and right
after named writes through the STATEGRAD_KILL_AT hook of stategrad.lm.  Resumed
runs must then leave exactly what an uninterrupted run leaves.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from stategrad.cli import main as cli
from stategrad.lm import TrainingError, perplexity, train, validate_config

torch.set_num_threads(1)

WORDS = "the a cat dog bird sees likes finds big small old in park house river".split()


def write_text(path: Path, n_lines: int, seed: int) -> None:
    rng = random.Random(seed)
    lines = (" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 9))) for _ in range(n_lines))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("corpus")
    write_text(folder / "train.txt", 150, 1)  # about 1,000 tokens: ~50 batches per epoch
    write_text(folder / "valid.txt", 40, 2)
    write_text(folder / "test.txt", 40, 3)
    return folder


def write_config(corpus: Path, folder: Path, save: Path, epochs: int = 3, **training) -> Path:
    options = {"batch_size": 4, "num_steps": 5, "max_max_epoch": epochs, "max_epoch": 1,
               "lr_decay": 0.5, "learning_rate": 1.0, "seed": 7, "threads": 1}
    options.update(training)
    lines = ["[data]", f'path = "{corpus}"',
             "[model]", "hidden_size = 16", "embedding_size = 8", "dropout = 0.2",
             "[training]", *(f"{k} = {json.dumps(v)}" for k, v in options.items()),
             "[output]", f'save_path = "{save}"']
    path = folder / f"{save.name}.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# --- running `stategrad train` in a child process -------------------------------------------

def _child(args: list[str], env: dict[str, str], log: str) -> None:
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.environ.update(env)
    try:
        cli.main(args=args, prog_name="stategrad")
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    os._exit(code)  # no atexit handlers of the test process


def start_train(config: Path, save: Path, env: dict[str, str] | None = None):
    args = ["train", str(config), "--no-progress", "--keep-epochs"]
    if (save / "last.pt").exists():
        args.append("--resume")
    process = multiprocessing.get_context("fork").Process(
        target=_child, args=(args, env or {}, str(save.parent / f"{save.name}.out")))
    process.start()
    return process


def finish(process, timeout: float = 120) -> int:
    process.join(timeout)
    if process.exitcode is None:
        process.kill()
        process.join()
        pytest.fail("train did not finish")
    return process.exitcode


# --- comparing with an uninterrupted run ----------------------------------------------------

TIMING = ("tokens_per_s", "seconds")  # durations differ from run to run; nothing else may


def checkpoint_view(path: Path) -> dict:
    payload = torch.load(path, weights_only=True)
    tr = payload["training"]
    history = [{k: v for k, v in m.items() if k not in TIMING} for m in tr["history"]]
    return {"state_dict": payload["state_dict"], "epoch": tr["epoch"], "batch": tr["batch"],
            "history": history, "best": (tr["best_epoch"], tr["best_valid_ppl"]),
            "optimizer": tr["optimizer"]["state"], "rng": tr["rng"]["torch"]}


def assert_same_checkpoint(a: Path, b: Path) -> None:
    va, vb = checkpoint_view(a), checkpoint_view(b)
    assert va["state_dict"].keys() == vb["state_dict"].keys()
    for k in va["state_dict"]:
        assert torch.equal(va["state_dict"][k], vb["state_dict"][k]), (b, k)
    for k in ("epoch", "batch", "history", "best"):
        assert va[k] == vb[k], (b, k)
    assert torch.equal(va["rng"], vb["rng"]), b
    for key, state in va["optimizer"].items():
        for name, value in state.items():
            other = vb["optimizer"][key][name]
            assert torch.equal(value, other) if torch.is_tensor(value) else value == other


def metrics_view(folder: Path) -> tuple[list, list]:
    rows = json.loads((folder / "metrics.json").read_text())
    json_rows = [{k: v for k, v in r.items() if k not in TIMING} for r in rows]
    table = [line.split(",") for line in (folder / "metrics.csv").read_text().splitlines()]
    keep = [i for i, name in enumerate(table[0]) if name not in TIMING]
    return json_rows, [[row[i] for i in keep] for row in table]


def log_view(folder: Path) -> list[str]:
    """The log's messages without timestamps and speeds, and without the lines that say
    on purpose where a run was interrupted, where it resumed, that nothing was left."""
    out = []
    for line in (folder / "train.log").read_text().splitlines():
        message = line.split(" ", 3)[3]  # date, time, level, message
        if message.startswith(("resuming from", "interrupt")) or "nothing to do" in message:
            continue
        out.append(re.sub(r"[\d,]+ tokens/s", "N tokens/s", message))
    return out


def assert_same_run(reference: Path, run: Path) -> None:
    names = sorted(p.name for p in reference.iterdir())
    assert sorted(p.name for p in run.iterdir()) == names  # no .tmp, nothing missing
    for name in names:
        if name.endswith(".pt"):
            assert_same_checkpoint(reference / name, run / name)
    assert metrics_view(run) == metrics_view(reference)
    assert log_view(run) == log_view(reference)
    assert (run / "vocab.txt").read_bytes() == (reference / "vocab.txt").read_bytes()


@pytest.fixture(scope="module")
def reference(corpus, tmp_path_factory):
    """An uninterrupted run, and how long it took."""
    folder = tmp_path_factory.mktemp("reference")
    save = folder / "run"
    config = write_config(corpus, folder, save)
    started = time.monotonic()
    assert finish(start_train(config, save)) == 0
    history = json.loads((save / "metrics.json").read_text())
    assert len(history) == 3
    return save, time.monotonic() - started


# --- kill -9 ---------------------------------------------------------------------------------

# Each entry is one run of `train` (with --resume from the second on), killed with SIGKILL
# right after the named write; in order they walk every gap between two writes of an
# epoch's end, on a fresh run, on resumed runs and on a finished one.
KILL_CHAIN = [
    "last.pt:1",         # epoch 1 committed, best.pt not yet written (the reported gap)
    "best.pt.tmp:1",     # the resume re-derives best.pt: killed before its rename
    "epoch_1.pt:1",      # ... after the epoch copy, metrics not yet rewritten
    "metrics.json.tmp:1",
    "metrics.csv:1",     # all of epoch 1 settled; epoch 2 never started
    "train.log:1",       # epoch 2 logged but not committed: the log must be rewound
    "last.pt:1",         # epoch 2 committed
    "metrics.json:1",    # ... and half of its metrics
    "last.pt:1",         # epoch 3 (the last) committed, nothing derived: "nothing to do"
    "metrics.csv.tmp:1", # the finished run's repair, killed halfway
]


def test_kill_at_every_write_of_an_epoch_end_resumes_exactly(corpus, reference, tmp_path):
    reference_save, _ = reference
    save = tmp_path / "run"
    config = write_config(corpus, tmp_path, save)
    killed = 0
    for spec in KILL_CHAIN:
        code = finish(start_train(config, save, {"STATEGRAD_KILL_AT": spec}))
        assert code in (-signal.SIGKILL, 0), (spec, (save.parent / "run.out").read_text())
        killed += code == -signal.SIGKILL
    assert killed == len(KILL_CHAIN)  # every run really stopped where the chain says
    assert finish(start_train(config, save)) == 0
    assert_same_run(reference_save, save)


def test_kill_at_random_moments_and_ctrl_c_resume_exactly(corpus, reference, tmp_path):
    reference_save, seconds = reference
    save = tmp_path / "run"
    config = write_config(corpus, tmp_path, save)
    rng = random.Random(20)
    # the first run is killed once epoch 1 is committed; later ones at any moment
    process = start_train(config, save)
    while not (save / "last.pt").exists() and process.is_alive():
        time.sleep(0.005)
    time.sleep(rng.uniform(0, 0.2))
    process.kill()
    finish(process)
    for attempt in range(4):
        process = start_train(config, save)
        time.sleep(rng.uniform(0.05, 1.0) * seconds)
        if attempt == 1:
            os.kill(process.pid, signal.SIGINT)  # Ctrl-C: a mid-epoch checkpoint, then exit
            assert finish(process) in (0, 1)  # 1: it came before the run took over Ctrl-C
        else:
            process.kill()
            finish(process)
    assert finish(start_train(config, save)) == 0
    assert_same_run(reference_save, save)


def test_resume_refuses_a_best_checkpoint_it_cannot_rebuild(corpus, tmp_path):
    save = tmp_path / "run"
    config = write_config(corpus, tmp_path, save, epochs=1)
    assert CliRunner().invoke(cli, ["train", str(config), "--no-progress"]).exit_code == 0
    payload = torch.load(save / "last.pt", weights_only=True)
    # last.pt after a worse epoch 2: best.pt must hold epoch 1 ...
    payload["training"].update(epoch=2, best_epoch=1)
    torch.save(payload, save / "last.pt")
    payload["training"]["epoch"] = 2  # ... but it holds epoch 2
    torch.save(payload, save / "best.pt")
    config = write_config(corpus, tmp_path, save, epochs=2)
    result = CliRunner().invoke(cli, ["train", str(config), "--resume", "--no-progress"])
    assert result.exit_code == 1
    assert "best.pt holds epoch 2" in result.output and "best epoch is 1" in result.output


# --- Ctrl-C twice ----------------------------------------------------------------------------

def test_second_ctrl_c_exits_without_a_traceback(corpus, tmp_path):
    save = tmp_path / "run"
    config = write_config(corpus, tmp_path, save, epochs=1000)
    process = subprocess.Popen([sys.executable, "-m", "stategrad", "train", str(config),
                                "--no-progress"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    try:
        deadline = time.monotonic() + 120
        while not (save / "last.pt").exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        process.send_signal(signal.SIGINT)
        line = process.stdout.readline()  # printed once the checkpoint is saved
        process.send_signal(signal.SIGINT)  # at once: lands in the interpreter's shutdown
        out, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert "interrupted; continue with" in line
    assert "Traceback" not in err and "Exception ignored" not in err, err
    assert torch.load(save / "last.pt", weights_only=True)["training"]["epoch"] >= 1


# --- divergence ------------------------------------------------------------------------------

def test_perplexity_of_a_huge_loss_is_infinite():
    assert perplexity(1e6) == float("inf")
    assert perplexity(2.0) == pytest.approx(7.38905609893065)


def config_dict(corpus: Path, save: Path, **training):
    options = {"batch_size": 4, "num_steps": 5, "max_max_epoch": 1, "seed": 7}
    options.update(training)
    return validate_config({"data": {"path": str(corpus)},
                            "model": {"hidden_size": 16, "embedding_size": 8},
                            "training": options, "output": {"save_path": str(save)}})


def test_huge_learning_rate_stops_and_keeps_the_last_good_checkpoint(corpus, tmp_path):
    save = tmp_path / "run"
    train(config_dict(corpus, save), progress=False)
    good = (save / "last.pt").read_bytes()
    with pytest.raises(TrainingError) as info:
        train(config_dict(corpus, save, max_max_epoch=2, learning_rate=1e6), resume=True,
              progress=False)
    message = str(info.value)
    assert "epoch 2" in message and "last good checkpoint" in message and "learning_rate" in message
    assert (save / "last.pt").read_bytes() == good
    assert len(json.loads((save / "metrics.json").read_text())) == 1
    assert not list(save.glob("*.tmp"))


# --- bad input -------------------------------------------------------------------------------

def one_line_error(result, *needles: str) -> None:
    assert result.exit_code in (1, 2), result.output
    assert isinstance(result.exception, SystemExit)  # not an unexpected exception
    assert "Traceback" not in result.output, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("Error:")]
    assert errors == lines[-1:], result.output  # progress lines may come first, then one error
    for needle in needles:
        assert needle in errors[0], result.output


@pytest.mark.parametrize("suffix", [".toml", ".config"])
def test_binary_config_is_one_clear_error(tmp_path, suffix):
    path = tmp_path / f"bad{suffix}"
    path.write_bytes(bytes(range(128, 256)) * 4)
    result = CliRunner().invoke(cli, ["train", str(path)])
    one_line_error(result, str(path))
    assert "utf-8" in result.output.lower()


def test_save_path_that_is_a_file_is_refused(corpus, tmp_path):
    target = tmp_path / "taken"
    target.write_text("not a folder")
    config = write_config(corpus, tmp_path, target)
    result = CliRunner().invoke(cli, ["train", str(config), "--no-progress"])
    one_line_error(result, "output.save_path", str(target))
    assert target.read_text() == "not a folder"


def test_training_text_of_empty_lines_is_refused(corpus, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.txt").write_text("\n" * 400 + "  \n" * 100)  # enough lines to "train" on
    for split in ("valid", "test"):
        (data / f"{split}.txt").write_text((corpus / f"{split}.txt").read_text())
    config = write_config(data, tmp_path, tmp_path / "run")
    result = CliRunner().invoke(cli, ["train", str(config), "--no-progress"])
    one_line_error(result, str(data / "train.txt"), "no words")
    assert not (tmp_path / "run" / "last.pt").exists()


def test_eval_warns_when_the_text_is_mostly_unknown_words(corpus, reference, tmp_path):
    other = tmp_path / "other.txt"
    other.write_text("alpha beta gamma delta\n" * 40)
    model = str(reference[0] / "best.pt")
    result = CliRunner().invoke(cli, ["eval", "--model", model, "--split", str(other),
                                      "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "warning: 80.0% of the text's tokens are <unk>" in result.stderr
    own = CliRunner().invoke(cli, ["eval", "--model", model, "--split", str(corpus / "test.txt"),
                                   "--no-progress"])
    assert own.exit_code == 0 and "warning" not in own.stderr


# --- read-only and full disks ----------------------------------------------------------------

def mount_tmpfs(folder: Path, options: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or 'not permitted'})")


@pytest.fixture
def disk(tmp_path):
    folder = tmp_path / "disk"
    mounted = []
    yield folder, mounted
    if mounted:
        # lazily: a test's exception may still hold a file of it open
        subprocess.run(["umount", "-l", str(folder)], check=False)


def test_read_only_target_fails_cleanly_and_keeps_the_checkpoints(corpus, tmp_path, disk):
    folder, mounted = disk
    mount_tmpfs(folder, "size=4m")
    mounted.append(folder)
    save = folder / "run"
    config = write_config(corpus, tmp_path, save, epochs=1)
    assert CliRunner().invoke(cli, ["train", str(config), "--no-progress"]).exit_code == 0
    before = {p.name: p.read_bytes() for p in save.iterdir()}
    subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
    config = write_config(corpus, tmp_path, save, epochs=2)
    result = CliRunner().invoke(cli, ["train", str(config), "--resume", "--no-progress"])
    one_line_error(result, str(save), "Read-only")
    assert {p.name: p.read_bytes() for p in save.iterdir()} == before


def test_full_disk_fails_cleanly_and_keeps_the_checkpoints(corpus, tmp_path, disk):
    folder, mounted = disk
    mount_tmpfs(folder, "size=1m")
    mounted.append(folder)
    save = folder / "run"
    config = write_config(corpus, tmp_path, save, epochs=1)
    assert CliRunner().invoke(cli, ["train", str(config), "--no-progress"]).exit_code == 0
    before = {p.name: p.read_bytes() for p in save.iterdir() if p.name != "train.log"}
    # fill the disk but for a few kilobytes: the log still takes lines, a checkpoint does not
    free = os.statvfs(folder).f_bavail * os.statvfs(folder).f_frsize
    (folder / "filler").write_bytes(b"\0" * max(free - 8192, 0))
    config = write_config(corpus, tmp_path, save, epochs=2)
    result = CliRunner().invoke(cli, ["train", str(config), "--resume", "--no-progress"])
    one_line_error(result, str(save))
    assert "bytes free on that disk" in result.output or "No space left" in result.output
    after = {p.name: p.read_bytes() for p in save.iterdir() if p.name != "train.log"}
    assert after == before  # no .tmp, every earlier file as it was


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (a device that is always full)")
def test_a_log_line_that_cannot_be_written_stops_with_the_file_named():
    import logging

    from stategrad.lm.rundir import _log_to

    with _log_to(Path("/dev/full")), pytest.raises(OSError) as info:
        logging.getLogger("stategrad.training").info("a line for a full disk")
    assert info.value.filename == "/dev/full" and "No space left" in str(info.value)
