"""Malformed input across every command: one table, one set of promises.

For every row: exit status 1 or 2, no traceback, a message that names the file or the
option at fault, no new file besides the expected ones, no ``*.tmp`` left anywhere, and
an earlier good output at the target path unchanged. Rows run in-process with click's
CliRunner, except those where a crash is possible (truncated HDF5, full or read-only
disks): they run in a subprocess so that a negative return code (a signal) fails too.

Rows in areas that other branches are fixing carry a strict xfail naming the branch.
"""

from __future__ import annotations

import collections
import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from stategrad import Vocabulary
from stategrad.cli import main
from stategrad.lm import RNNLM, ModelSpec, save_checkpoint

torch.set_num_threads(1)

WORDS = ["the", "cat", "dog", "sat", "ran", "on", "mat", "a", "big", "small"]
TAGS = {"the": "DT", "a": "DT", "cat": "NN", "dog": "NN", "mat": "NN", "sat": "VBD",
        "ran": "VBD", "on": "IN", "big": "JJ", "small": "JJ", "<eos>": "EOS"}
RANDOM = np.random.default_rng(0).bytes(3000)
BINARY = b"\x00\x01\x02\xff\xfe\x00" * 50
LATIN1 = "caf\xe9 d\xe9j\xe0 vu\nthe cat\n".encode("latin-1")


def _text(seed: int, n: int = 40) -> str:
    rng = np.random.default_rng(seed)
    return "".join(" ".join(rng.choice(WORDS, size=rng.integers(3, 9))) + "\n" for _ in range(n))


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    """Good inputs every row starts from: model, texts, maps, result, stats, configs."""
    g = tmp_path_factory.mktemp("good")
    counts = collections.Counter({w: 20 - i for i, w in enumerate(WORDS)} | {"<eos>": 8})
    vocab = Vocabulary.from_counts(counts)
    torch.manual_seed(0)
    module = RNNLM(ModelSpec(vocab_size=len(vocab), embedding_size=5, hidden_size=6, cell="lstm",
                             init_scale=0.5))
    save_checkpoint(g / "model.pt", module, vocab, config={})
    # the layout of PyTorch's word_language_model example, which --vocab is for
    torch.save({k.replace("embedding.", "encoder."): v for k, v in module.state_dict().items()},
               g / "state_dict.pt")
    vocab.save(g / "vocab.txt")
    (g / "text.txt").write_text(_text(0))
    corpus = g / "corpus"
    corpus.mkdir()
    for i, split in enumerate(("train", "valid", "test")):
        (corpus / f"{split}.txt").write_text(_text(i, 30))
    (g / "pos.txt").write_text("".join(f"{w} {t}\n" for w, t in TAGS.items()))
    (g / "nouns.txt").write_text("NN\nNNS\n")
    (g / "classes.tsv").write_text("cat\tanimals\ndog\tanimals\n")
    (g / "tagged.conll").write_text("The DT B-NP\ncat NN I-NP\nsat VBD B-VP\n. . O\n\n" * 5)
    (g / "vectors.txt").write_text("3 4\nthe 0.1 0.2 0.3 0.4\ncat 0.5 0.1 0.0 0.2\n"
                                   "dog 0.3 0.3 0.1 0.9\n")
    (g / "config.toml").write_text(_toml(corpus, "{W}/model"))
    (g / "orig.config").write_text(f"data_path {corpus}\nsize 5\nembedding_size 4\n"
                                   "batch_size 4\nnum_steps 5\nmax_epoch 1\nmax_max_epoch 1\n"
                                   "save_path {W}/model\n")
    r = _invoke(["gradients", "--model", g / "model.pt", "--text", g / "text.txt",
                 "--max-delay", 4, "--classes", "ptb", "--pos-map", g / "pos.txt",
                 "--block-size", 60, "--no-progress", "--out", g / "result.h5",
                 "--raw-positions", "0:4", "--export-original", g / "orig"])
    assert r.exit_code == 0, r.output
    r = _invoke(["embedding-stats", "--model", g / "model.pt", "--text", g / "text.txt",
                 "--out", g / "stats.npz"])
    assert r.exit_code == 0, r.output
    np.save(g / "vector.npy", np.ones(5))
    (g / "figure.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)
    return g


def _toml(corpus: Path | str, save: str, **extra: str) -> str:
    lines = {"data": f'path = "{corpus}"',
             "model": "hidden_size = 5\nembedding_size = 4",
             "training": "batch_size = 4\nnum_steps = 5\nmax_max_epoch = 1",
             "output": f'save_path = "{save}"'}
    for section, text in extra.items():
        lines[section] = lines[section] + "\n" + text
    return "".join(f"[{k}]\n{v}\n" for k, v in lines.items())


def _invoke(args):
    return CliRunner().invoke(main, [str(a) for a in args], prog_name="stategrad")


# --- the table ---------------------------------------------------------------------------------

Content = bytes | str | Callable[[Path, Path], None]


@dataclass
class Case:
    id: str
    args: str                       # formatted with {G} (good inputs) and {W} (this row's folder)
    names: tuple[str, ...]          # each must appear in the output
    files: dict[str, Content] = field(default_factory=dict)   # written to {W} first
    target: tuple[str, str] | None = None   # ({W}-relative output, good file copied there)
    allowed: tuple[str, ...] = ()   # new files that may appear (relative to {W})
    mount: str | None = None        # "full" or "ro": {W}/disk is a small tmpfs
    subprocess: bool = False
    pending: str | None = None      # branch that owns the fix: strict xfail until merged


def _toml_with(**extra: str) -> Callable[[Path, Path], None]:
    def write(g: Path, w: Path) -> None:
        (w / "bad.toml").write_text(_toml(g / "corpus", str(w / "model"), **extra))
    return write


def _truncated(name: str, keep: float = 0.5) -> Callable[[Path, Path], None]:
    def write(g: Path, w: Path) -> None:
        data = (g / name).read_bytes()
        (w / ("cut_" + name)).write_bytes(data[: int(len(data) * keep)])
    return write


def _h5(build: Callable) -> Callable[[Path, Path], None]:
    def write(g: Path, w: Path) -> None:
        import h5py

        shutil.copy(g / "result.h5", w / "bad.h5")
        with h5py.File(w / "bad.h5", "r+") as f:
            build(f)
    return write


def _del(name: str) -> Callable:
    return lambda f: f.__delitem__(name)


def _reshape(name: str) -> Callable:
    def build(f) -> None:
        data = f[name][...]
        del f[name]
        f[name] = data.reshape(-1)[:-1]
    return build


def _npz(**arrays) -> Callable[[Path, Path], None]:
    def write(g: Path, w: Path) -> None:
        with np.load(g / "stats.npz") as data:
            merged = {k: data[k] for k in data.files}
        merged.update(arrays)
        merged = {k: v for k, v in merged.items() if v is not None}
        np.savez(w / "bad.npz", **merged)
    return write


def _other_model_stats(g: Path, w: Path) -> None:
    """The stats file as if computed from another model's embeddings."""
    with np.load(g / "stats.npz") as data:
        arrays = {k: data[k] for k in data.files}
    meta = json.loads(str(arrays["metadata"]))
    meta["model"]["identity"] = "0" * 64
    arrays["metadata"] = np.array(json.dumps(meta))
    np.savez(w / "bad.npz", **arrays)


def _checkpoint(change: Callable[[dict], None]) -> Callable[[Path, Path], None]:
    def write(g: Path, w: Path) -> None:
        payload = torch.load(g / "model.pt", weights_only=True)
        change(payload)
        torch.save(payload, w / "bad.pt")
    return write


def _gru_checkpoint(g: Path, w: Path) -> None:
    vocab = Vocabulary.load(g / "vocab.txt")
    torch.manual_seed(0)
    module = RNNLM(ModelSpec(vocab_size=len(vocab), embedding_size=5, hidden_size=6, cell="gru"))
    save_checkpoint(w / "gru.pt", module, vocab, config={})


def _pickled_module(g: Path, w: Path) -> None:
    torch.manual_seed(0)
    torch.save(torch.nn.Linear(2, 2), w / "bad.pt")


GRAD = "gradients --model {G}/model.pt --text {G}/text.txt --max-delay 3 --no-progress"
GOUT = ("out.h5", "result.h5")
MODEL_OUT = ("model/last.pt", "model.pt")


def _gradients(extra: str, name: str, **kw) -> Case:
    return Case(f"gradients-{name}", f"{GRAD} {extra} --out {{W}}/out.h5",
                kw.pop("names"), target=GOUT, **kw)


CASES: list[Case] = [
    # --- train: TOML configurations ---------------------------------------------------------
    Case("train-missing-config", "train {W}/nope.toml", ("nope.toml",)),
    Case("train-config-is-dir", "train {W}/sub", ("sub",), files={"sub/x": "x"}),
    Case("train-toml-syntax", "train {W}/bad.toml", ("bad.toml",), files={"bad.toml": "[data\npath = 1\n"}),
    Case("train-toml-binary", "train {W}/bad.toml", ("bad.toml",), files={"bad.toml": BINARY}),
    Case("train-toml-latin1", "train {W}/bad.toml", ("bad.toml",), files={"bad.toml": b'[data]\npath = "caf\xe9"\n'}),
    Case("train-toml-empty", "train {W}/bad.toml", ("bad.toml",), files={"bad.toml": ""}),
    Case("train-toml-unknown-key", "train {W}/bad.toml", ("hiden_size", "hidden_size"),
         files={"bad.toml": _toml_with(model="hiden_size = 3")}),
    Case("train-toml-unknown-section", "train {W}/bad.toml", ("modle",),
         files={"bad.toml": lambda g, w: (w / "bad.toml").write_text(
             _toml(g / "corpus", str(w / "model")) + "[modle]\nx = 1\n")}),
    Case("train-toml-wrong-type", "train {W}/bad.toml", ("batch_size",),
         files={"bad.toml": lambda g, w: (w / "bad.toml").write_text(
             _toml(g / "corpus", str(w / "model")).replace("batch_size = 4", 'batch_size = "four"'))}),
    Case("train-toml-negative-hidden", "train {W}/bad.toml", ("hidden_size",),
         files={"bad.toml": lambda g, w: (w / "bad.toml").write_text(
             _toml(g / "corpus", str(w / "model")).replace("hidden_size = 5", "hidden_size = -5"))}),
    Case("train-toml-dropout-above-one", "train {W}/bad.toml", ("dropout",),
         files={"bad.toml": _toml_with(model="dropout = 1.5")}),
    Case("train-toml-bad-cell", "train {W}/bad.toml", ("cell",),
         files={"bad.toml": _toml_with(model='cell = "transformer"')}),
    Case("train-toml-bad-optimizer", "train {W}/bad.toml", ("optimizer",),
         files={"bad.toml": _toml_with(training='optimizer = "lbfgs"')}),
    Case("train-toml-zero-num-steps", "train {W}/bad.toml", ("num_steps",),
         files={"bad.toml": lambda g, w: (w / "bad.toml").write_text(
             _toml(g / "corpus", str(w / "model")).replace("num_steps = 5", "num_steps = 0"))}),
    Case("train-toml-negative-lr", "train {W}/bad.toml", ("learning_rate",),
         files={"bad.toml": _toml_with(training="learning_rate = -1.0")}),
    Case("train-toml-missing-data", "train {W}/bad.toml", ("nowhere",),
         files={"bad.toml": lambda g, w: (w / "bad.toml").write_text(
             _toml(w / "nowhere", str(w / "model")))}),
    Case("train-toml-empty-train-text", "train {W}/bad.toml", ("train.txt",),
         files={"c/train.txt": "", "c/valid.txt": "the cat\n", "c/test.txt": "the cat\n",
                "bad.toml": lambda g, w: (w / "bad.toml").write_text(_toml(w / "c", str(w / "model")))}),
    Case("train-toml-binary-train-text", "train {W}/bad.toml", ("train.txt",),
         files={"c/train.txt": LATIN1, "c/valid.txt": "the cat\n", "c/test.txt": "the cat\n",
                "bad.toml": lambda g, w: (w / "bad.toml").write_text(_toml(w / "c", str(w / "model")))}),
    Case("train-toml-vocab-duplicates", "train {W}/bad.toml", ("vocab.tsv",),
         files={"vocab.tsv": "the\t0\nthe\t1\n<unk>\t2\n",
                "bad.toml": lambda g, w: (w / "bad.toml").write_text(_toml(
                    g / "corpus", str(w / "model"), data=f'vocab_file = "{w}/vocab.tsv"'))}),
    Case("train-toml-bad-device", "train {W}/bad.toml", ("tpu",),
         files={"bad.toml": _toml_with(training='device = "tpu"')}),
    Case("train-device-option", "train {G}/config.toml --device tpu", ("tpu",)),
    Case("train-toml-save-path-is-file", "train {W}/bad.toml", ("save",),
         files={"save": "a file",
                "bad.toml": lambda g, w: (w / "bad.toml").write_text(_toml(g / "corpus", str(w / "save")))}),
    Case("train-toml-huge-lr-nan", "train {W}/bad.toml", ("learning",),
         files={"bad.toml": _toml_with(training="learning_rate = 1e30")},
         allowed=("model/*",)),
    Case("train-toml-lr-1e6", "train {W}/bad.toml --no-progress", ("learning", "infinite"), allowed=("model*",),
         files={"bad.toml": _toml_with(training="learning_rate = 1e6\nmax_grad_norm = 1e9")}),
    Case("train-resume-random-checkpoint", "train {W}/bad.toml --resume", ("last.pt",),
         files={"model/last.pt": RANDOM,
                "bad.toml": lambda g, w: (w / "bad.toml").write_text(_toml(g / "corpus", str(w / "model")))}),
    Case("train-full-disk", "train {W}/bad.toml --no-progress", ("disk",), mount="full",
         files={"bad.toml": lambda g, w: (w / "bad.toml").write_text(_toml(g / "corpus", str(w / "disk/m")))},
         subprocess=True),
    # --- train / run: the original's .config -------------------------------------------------
    Case("run-missing-config", "run --config {W}/nope.config", ("nope.config",)),
    Case("run-config-binary", "run --config {W}/bad.config", ("bad.config",), files={"bad.config": BINARY}),
    Case("run-config-latin1", "run --config {W}/bad.config", ("bad.config",), files={"bad.config": LATIN1}),
    Case("run-config-unknown-key", "run --config {W}/bad.config", ("frobnicate",),
         files={"bad.config": lambda g, w: (w / "bad.config").write_text(
             (g / "orig.config").read_text() + "frobnicate 3\n")}),
    Case("run-config-wrong-type", "run --config {W}/bad.config", ("batch_size",),
         files={"bad.config": lambda g, w: (w / "bad.config").write_text(
             (g / "orig.config").read_text().replace("batch_size 4", "batch_size four"))}),
    Case("run-config-dropout-keep-above-one", "run --config {W}/bad.config", ("dropout",),
         files={"bad.config": lambda g, w: (w / "bad.config").write_text(
             (g / "orig.config").read_text() + "dropout 1.7\n")}),
    Case("run-config-random-seed", "run --config {W}/bad.config", ("random",),
         files={"bad.config": lambda g, w: (w / "bad.config").write_text(
             (g / "orig.config").read_text() + "random True\n")}),
    Case("run-config-empty", "run --config {W}/bad.config", ("bad.config",), files={"bad.config": ""}),
    Case("train-legacy-config-negative-size", "train {W}/bad.config", ("size",),
         files={"bad.config": lambda g, w: (w / "bad.config").write_text(
             (g / "orig.config").read_text().replace("size 5", "size -5"))}),
    # --- eval ---------------------------------------------------------------------------------
    Case("eval-nothing", "eval", ("CONFIG", "--model")),
    Case("eval-missing-model", "eval --model {W}/nope.pt --split {G}/text.txt", ("nope.pt",)),
    Case("eval-random-model", "eval --model {W}/bad.pt --split {G}/text.txt", ("bad.pt",), files={"bad.pt": RANDOM}),
    Case("eval-empty-model", "eval --model {W}/bad.pt --split {G}/text.txt", ("bad.pt",), files={"bad.pt": b""}),
    Case("eval-model-is-dir", "eval --model {W}/sub --split {G}/text.txt", ("sub",), files={"sub/x": "x"}),
    Case("eval-missing-split", "eval --model {G}/model.pt --split {W}/nope.txt", ("--split", "nope.txt")),
    Case("eval-split-latin1", "eval --model {G}/model.pt --split {W}/bad.txt", ("bad.txt",), files={"bad.txt": LATIN1}),
    Case("eval-split-empty", "eval --model {G}/model.pt --split {W}/bad.txt", ("bad.txt",), files={"bad.txt": ""}),
    Case("eval-zero-batch", "eval --model {G}/model.pt --split {G}/text.txt --batch-size 0", ("--batch-size",)),
    Case("eval-valid-without-config", "eval --model {W}/bad.pt --split valid", ("bad.pt", "--split"),
         files={"bad.pt": _checkpoint(lambda p: p.update(config={}))}),
    # --- gradients: inputs --------------------------------------------------------------------
    Case("gradients-missing-model", "gradients --model {W}/nope.pt --text {G}/text.txt -D 3 --out {W}/out.h5",
         ("nope.pt",), target=GOUT),
    Case("gradients-random-model", "gradients --model {W}/bad.pt --text {G}/text.txt -D 3 --out {W}/out.h5",
         ("bad.pt",), files={"bad.pt": RANDOM}, target=GOUT),
    Case("gradients-empty-model", "gradients --model {W}/bad.pt --text {G}/text.txt -D 3 --out {W}/out.h5",
         ("bad.pt",), files={"bad.pt": b""}, target=GOUT),
    Case("gradients-truncated-model", "gradients --model {W}/cut_model.pt --text {G}/text.txt -D 3 --out {W}/out.h5",
         ("cut_model.pt",), files={"cut": _truncated("model.pt")}, target=GOUT),
    Case("gradients-model-is-text", "gradients --model {G}/text.txt --text {G}/text.txt -D 3 --out {W}/out.h5",
         ("text.txt",), target=GOUT),
    Case("gradients-model-is-dir", "gradients --model {W}/sub --text {G}/text.txt -D 3 --out {W}/out.h5",
         ("sub",), files={"sub/x": "x"}, target=GOUT),
    Case("gradients-pickled-module-untrusted", "gradients --model {W}/bad.pt --text {G}/text.txt -D 3 --out {W}/out.h5",
         ("bad.pt", "--trusted"), files={"bad.pt": _pickled_module}, target=GOUT),
    Case("gradients-checkpoint-wrong-format", "gradients --model {W}/bad.pt --text {G}/text.txt -D 3 --out {W}/out.h5",
         ("bad.pt",), files={"bad.pt": _checkpoint(lambda p: p.update(format="something-else"))}, target=GOUT),
    Case("gradients-checkpoint-tampered-spec", "gradients --model {W}/bad.pt --text {G}/text.txt -D 3 --out {W}/out.h5",
         ("bad.pt",), files={"bad.pt": _checkpoint(lambda p: p["spec"].update(hidden_size=7))},
         target=GOUT),
    Case("gradients-checkpoint-no-vocab", "gradients --model {W}/bad.pt --text {G}/text.txt -D 3 --out {W}/out.h5",
         ("bad.pt",), files={"bad.pt": _checkpoint(lambda p: p.pop("vocab"))}, target=GOUT),
    Case("gradients-state-dict-without-vocab", "gradients --model {G}/state_dict.pt --text {G}/text.txt -D 3 --out {W}/out.h5",
         ("state_dict.pt",), target=GOUT),
    Case("gradients-vocab-binary", "gradients --model {G}/state_dict.pt --vocab {W}/v.txt --text {G}/text.txt -D 3 --out {W}/out.h5",
         ("v.txt",), files={"v.txt": BINARY}, target=GOUT),
    Case("gradients-vocab-too-small", "gradients --model {G}/state_dict.pt --vocab {W}/v.txt --text {G}/text.txt -D 3 --out {W}/out.h5",
         ("state_dict.pt", "3 words"), files={"v.txt": "the\t0\ncat\t1\n<unk>\t2\n"}, target=GOUT),
    Case("gradients-vocab-gap", "gradients --model {G}/state_dict.pt --vocab {W}/v.txt --text {G}/text.txt -D 3 --out {W}/out.h5",
         ("v.txt",), files={"v.txt": "".join(f"w{i}\t{i * 2}\n" for i in range(13))}, target=GOUT),
    Case("gradients-vocab-duplicate-word", "gradients --model {G}/state_dict.pt --vocab {W}/v.txt --text {G}/text.txt -D 3 --out {W}/out.h5",
         ("v.txt",), files={"v.txt": "".join(f"w{min(i, 5)}\t{i}\n" for i in range(13))}, target=GOUT),
    Case("gradients-vocab-duplicate-id", "gradients --model {G}/state_dict.pt --vocab {W}/v.txt --text {G}/text.txt -D 3 --out {W}/out.h5",
         ("v.txt",), files={"v.txt": "".join(f"w{i}\t{min(i, 5)}\n" for i in range(13))}, target=GOUT),
    Case("gradients-vocab-bad-id", "gradients --model {G}/state_dict.pt --vocab {W}/v.txt --text {G}/text.txt -D 3 --out {W}/out.h5",
         ("v.txt",), files={"v.txt": "the\tzero\n"}, target=GOUT),
    Case("gradients-missing-text", "gradients --model {G}/model.pt --text {W}/nope.txt -D 3 --out {W}/out.h5",
         ("nope.txt",), target=GOUT),
    Case("gradients-empty-text", "gradients --model {G}/model.pt --text {W}/t.txt -D 3 --out {W}/out.h5",
         ("t.txt",), files={"t.txt": ""}, target=GOUT),
    Case("gradients-blank-text", "gradients --model {G}/model.pt --text {W}/t.txt -D 3 --out {W}/out.h5 --no-eos",
         ("t.txt",), files={"t.txt": "\n\n   \n"}, target=GOUT),
    Case("gradients-binary-text", "gradients --model {G}/model.pt --text {W}/t.txt -D 3 --out {W}/out.h5",
         ("t.txt",), files={"t.txt": BINARY}, target=GOUT),
    Case("gradients-latin1-text", "gradients --model {G}/model.pt --text {W}/t.txt -D 3 --out {W}/out.h5",
         ("t.txt",), files={"t.txt": LATIN1}, target=GOUT),
    Case("gradients-unknown-encoding", "gradients --model {G}/model.pt --text {G}/text.txt -D 3 --out {W}/out.h5 --encoding klingon",
         ("klingon", "--encoding"), target=GOUT),
    # --- gradients: options ------------------------------------------------------------------
    Case("gradients-zero-delay", "gradients --model {G}/model.pt --text {G}/text.txt -D 0 --out {W}/out.h5",
        ("--max-delay",), target=GOUT),
    Case("gradients-negative-delay", "gradients --model {G}/model.pt --text {G}/text.txt -D -2 --out {W}/out.h5",
         ("--max-delay",), target=GOUT),
    Case("gradients-delay-not-int", "gradients --model {G}/model.pt --text {G}/text.txt -D ten --out {W}/out.h5",
         ("--max-delay",), target=GOUT),
    _gradients("--state hidden --layer 3", "no-such-layer", names=("layer",)),
    _gradients("--state hidden --layer -5", "negative-layer", names=("layer",)),
    _gradients("--state gates", "no-such-state", names=("--state",)),
    _gradients("--classes ptb", "classes-without-pos-map", names=("--pos-map",)),
    _gradients("--classes nosuchset --pos-map {G}/pos.txt", "unknown-class-set", names=("nosuchset",)),
    _gradients("--classes ptb:nouns+ghosts --pos-map {G}/pos.txt", "unknown-class-in-set", names=("ghosts",)),
    _gradients("--classes , --pos-map {G}/pos.txt", "empty-classes-spec", names=("--classes",)),
    _gradients("--classes {W}/empty.txt --pos-map {G}/pos.txt", "empty-class-file", names=("empty.txt",),
               files={"empty.txt": ""}),
    _gradients("--classes {W}/cls.txt --pos-map {G}/pos.txt", "binary-class-file", names=("cls.txt",),
               files={"cls.txt": BINARY}),
    _gradients("--classes {W}/cls.txt --pos-map {G}/pos.txt", "class-file-unknown-tag", names=("cls.txt", "XYZ"),
               files={"cls.txt": "XYZ\n"}),
    _gradients("--classes ptb --pos-map {W}/pos.txt", "pos-map-binary", names=("pos.txt",),
               files={"pos.txt": BINARY}),
    _gradients("--classes ptb --pos-map {W}/pos.txt", "pos-map-latin1", names=("pos.txt",),
               files={"pos.txt": LATIN1}),
    _gradients("--classes ptb --pos-map {W}/pos.txt", "pos-map-word-without-tag", names=("pos.txt",),
               files={"pos.txt": "the DT\ncat\ndog NN\n"}),
    _gradients("--classes ptb --pos-map {W}/pos.txt", "pos-map-empty", names=("pos.txt",),
               files={"pos.txt": ""}),
    _gradients("--classes ptb --pos-map {W}/pos.txt", "pos-map-unknown-tags", names=("pos.txt", "QQ"),
               files={"pos.txt": "the QQ\ncat ZZ\n"}),
    _gradients("--class-map {W}/c.tsv", "class-map-one-column", names=("c.tsv",), files={"c.tsv": "cat\ndog\n"}),
    _gradients("--class-words {W}/w.txt", "class-words-empty", names=("w.txt",), files={"w.txt": ""}),
    _gradients("--classes universal --pos-map {G}/pos.txt --tag-map {W}/t.map", "tag-map-malformed",
               names=("t.map",), files={"t.map": "NN\n"}),
    _gradients("--sample-fraction 0", "sample-fraction-zero", names=("--sample-fraction",)),
    _gradients("--sample-fraction 1.5", "sample-fraction-above-one", names=("--sample-fraction",)),
    _gradients("--sample-fraction abc", "sample-fraction-text", names=("--sample-fraction",)),
    _gradients("--sample-every 0", "sample-every-zero", names=("--sample-every",)),
    _gradients("--sample-every 2 --sample-fraction 0.5", "two-sampling-schemes", names=("--sample",)),
    _gradients("--start -1", "negative-start", names=("--start",)),
    _gradients("--start 10 --stop 5", "stop-before-start", names=("--stop",)),
    _gradients("--start 100000", "start-past-end", names=("--start",)),
    _gradients("--start 5 --stop 5", "empty-slice", names=("--stop",)),
    _gradients("--block-size 0", "zero-block-size", names=("--block-size",)),
    _gradients("--semantics segment --segment-length 0", "zero-segment-length", names=("--segment-length",)),
    _gradients("--dtype float16", "bad-dtype", names=("--dtype",)),
    _gradients("--device tpu", "bad-device", names=("tpu",)),
    _gradients("--threads 0", "zero-threads", names=("--threads",)),
    _gradients("--raw {W}/raw.h5 --raw-positions 5:2", "bad-raw-positions", names=("--raw-positions",)),
    _gradients("--raw {W}/raw.h5 --raw-delays x", "bad-raw-delays", names=("--raw-delays",)),
    _gradients("--raw {W}/raw.h5 --raw-delays 7", "raw-delay-beyond-max", names=("--raw-delays",)),
    # A damaged or foreign OUT.partial is not an input error: it is set aside and the run
    # starts afresh (tests/test_faults_gradients.py checks that).
    Case("gradients-out-is-dir", f"{GRAD} --out {{W}}/sub", ("sub",), files={"sub/x": "x"}),
    Case("gradients-full-disk", f"{GRAD} --out {{W}}/disk/out.h5", ("out.h5",), mount="full",
         target=("disk/out.h5", "result.h5"), subprocess=True),
    Case("gradients-read-only", f"{GRAD} --out {{W}}/disk/out.h5", ("out.h5",), mount="ro",
         target=("disk/out.h5", "result.h5")),
    # --- merge / inspect: result files ---------------------------------------------------------
    Case("inspect-random-bytes", "inspect {W}/bad.h5", ("bad.h5",), files={"bad.h5": RANDOM}),
    Case("inspect-empty-file", "inspect {W}/bad.h5", ("bad.h5",), files={"bad.h5": b""}),
    Case("inspect-truncated-hdf5", "inspect {W}/cut_result.h5", ("cut_result.h5",),
         files={"cut": _truncated("result.h5")}, subprocess=True),
    Case("inspect-truncated-hdf5-tail", "inspect {W}/cut_result.h5", ("cut_result.h5",),
         files={"cut": _truncated("result.h5", 0.95)}, subprocess=True),
    Case("inspect-text-file", "inspect {G}/text.txt", ("text.txt",)),
    Case("inspect-missing-sums", "inspect {W}/bad.h5", ("bad.h5",), files={"bad.h5": _h5(_del("sums"))}),
    Case("inspect-missing-counts", "inspect {W}/bad.h5", ("bad.h5",), files={"bad.h5": _h5(_del("counts"))}),
    Case("inspect-wrong-shape-sums", "inspect {W}/bad.h5", ("bad.h5",), files={"bad.h5": _h5(_reshape("sums"))}),
    Case("inspect-wrong-shape-counts", "inspect {W}/bad.h5", ("bad.h5",), files={"bad.h5": _h5(_reshape("counts"))}),
    Case("inspect-other-hdf5", "inspect {W}/bad.h5", ("bad.h5",),
         files={"bad.h5": lambda g, w: __import__("h5py").File(w / "bad.h5", "w").create_dataset("x", data=[1])}),
    Case("merge-random-second", "merge {G}/result.h5 {W}/bad.h5 --out {W}/out.h5", ("bad.h5",),
         files={"bad.h5": RANDOM}, target=GOUT),
    Case("merge-same-file-twice", "merge {G}/result.h5 {G}/result.h5 --out {W}/out.h5", ("counted twice",),
         target=GOUT),
    Case("merge-different-shape", "merge {G}/result.h5 {W}/bad.h5 --out {W}/out.h5", ("bad.h5",),
         files={"bad.h5": _h5(_reshape("sums"))}, target=GOUT),
    Case("merge-out-is-dir", "merge {G}/result.h5 --out {W}/sub", ("sub",), files={"sub/x": "x"}),
    Case("merge-full-disk", "merge {G}/result.h5 --out {W}/disk/out.h5", ("out.h5",), mount="full",
         target=("disk/out.h5", "result.h5"), subprocess=True),
    Case("merge-read-only", "merge {G}/result.h5 --out {W}/disk/out.h5", ("out.h5",), mount="ro",
         target=("disk/out.h5", "result.h5")),
    # --- embedding-stats, svd, memory, relative-memory ---------------------------------------
    Case("stats-random-model", "embedding-stats --model {W}/bad.pt --text {G}/text.txt --out {W}/s.npz",
         ("bad.pt",), files={"bad.pt": RANDOM}, target=("s.npz", "stats.npz")),
    Case("stats-empty-text", "embedding-stats --model {G}/model.pt --text {W}/t.txt --out {W}/s.npz",
         ("t.txt",), files={"t.txt": ""}, target=("s.npz", "stats.npz")),
    Case("stats-latin1-text", "embedding-stats --model {G}/model.pt --text {W}/t.txt --out {W}/s.npz",
         ("t.txt",), files={"t.txt": LATIN1}, target=("s.npz", "stats.npz")),
    Case("stats-random-embeddings", "embedding-stats --embeddings {W}/e.npy --out {W}/s.npz",
         ("e.npy",), files={"e.npy": RANDOM}, target=("s.npz", "stats.npz")),
    Case("stats-embeddings-1d", "embedding-stats --embeddings {W}/e.npy --out {W}/s.npz",
         ("e.npy",), files={"e.npy": lambda g, w: np.save(w / "e.npy", np.ones(5))},
         target=("s.npz", "stats.npz")),
    Case("stats-no-inputs", "embedding-stats --out {W}/s.npz", ("--model",), target=("s.npz", "stats.npz")),
    Case("stats-negative-ridge", "embedding-stats --model {G}/model.pt --text {G}/text.txt --ridge -1 --out {W}/s.npz",
         ("--ridge",), target=("s.npz", "stats.npz")),
    Case("stats-full-disk", "embedding-stats --model {G}/model.pt --text {G}/text.txt --out {W}/disk/s.npz",
         ("s.npz",), mount="full", target=("disk/s.npz", "stats.npz"), subprocess=True),
    Case("stats-read-only", "embedding-stats --model {G}/model.pt --text {G}/text.txt --out {W}/disk/s.npz",
         ("s.npz",), mount="ro", target=("disk/s.npz", "stats.npz")),
    Case("svd-random-result", "svd {W}/bad.h5", ("bad.h5",), files={"bad.h5": RANDOM}),
    Case("svd-random-stats", "svd {G}/result.h5 --normalize {W}/bad.npz", ("bad.npz",), files={"bad.npz": RANDOM}),
    Case("svd-truncated-stats", "svd {G}/result.h5 --normalize {W}/cut_stats.npz", ("cut_stats.npz",),
         files={"cut": _truncated("stats.npz")}),
    Case("svd-stats-missing-L", "svd {G}/result.h5 --normalize {W}/bad.npz", ("bad.npz",),
         files={"bad.npz": lambda g, w: np.savez(w / "bad.npz", mean=np.zeros(4))}),
    Case("svd-stats-wrong-size", "svd {G}/result.h5 --normalize {W}/bad.npz", ("bad.npz",),
         files={"bad.npz": lambda g, w: np.savez(w / "bad.npz", mean=np.zeros(3), covariance=np.eye(3),
                                                  L=np.eye(3), Z=np.eye(3))}),
    Case("svd-stats-nan-L", "svd {G}/result.h5 --normalize {W}/bad.npz", ("bad.npz",),
         files={"bad.npz": _npz(cholesky=np.full((5, 5), np.nan))}),
    Case("svd-stats-dir-empty", "svd {G}/result.h5 --normalize {W}/sub", ("sub",), files={"sub/x.txt": "x"}),
    Case("svd-unknown-class", "svd {G}/result.h5 --classes ghosts", ("ghosts",)),
    Case("svd-zero-top", "svd {G}/result.h5 --top 0", ("--top",)),
    Case("svd-csv-is-dir", "svd {G}/result.h5 --csv {W}/sub", ("--csv",), files={"sub/x": "x"}),
    Case("svd-csv-full-disk", "svd {G}/result.h5 --csv {W}/disk/t.csv", ("t.csv",), mount="full",
         target=("disk/t.csv", "text.txt"), subprocess=True),
    Case("memory-bad-fraction", "memory {G}/result.h5 --fraction 1.5", ("--fraction",)),
    Case("memory-negative-fraction", "memory {G}/result.h5 --fraction -0.1", ("--fraction",)),
    Case("memory-ci-zero-boot", "memory {G}/result.h5 --ci bootstrap --n-boot 0", ("--n-boot",)),
    Case("memory-bad-level", "memory {G}/result.h5 --ci jackknife --level 1.5", ("--level",)),
    Case("memory-ci-missing-blocks", "memory {W}/bad.h5 --ci jackknife", ("bad.h5",),
         files={"bad.h5": _h5(_del("blocks"))}),
    Case("memory-json-read-only", "memory {G}/result.h5 --json {W}/disk/m.json", ("m.json",), mount="ro",
         target=("disk/m.json", "text.txt")),
    Case("relmem-no-diff", "relative-memory {G}/result.h5 --normalize {G}/stats.npz", ("--diff",)),
    Case("relmem-unknown-words", "relative-memory {G}/result.h5 --normalize {G}/stats.npz --model {G}/model.pt --diff zzz yyy",
         ("zzz",)),
    Case("relmem-vector-wrong-size", "relative-memory {G}/result.h5 --normalize {G}/stats.npz --vector {W}/v.npy",
         ("v.npy",), files={"v.npy": lambda g, w: np.save(w / "v.npy", np.ones(7))}),
    Case("relmem-vector-random", "relative-memory {G}/result.h5 --normalize {G}/stats.npz --vector {W}/v.npy",
         ("v.npy",), files={"v.npy": RANDOM}),
    Case("relmem-unknown-class", "relative-memory {G}/result.h5 --normalize {G}/stats.npz --vector {G}/vector.npy --class ghosts",
         ("ghosts",)),
    Case("relmem-zero-top-k", "relative-memory {G}/result.h5 --normalize {G}/stats.npz --vector {G}/vector.npy --top-k 0",
         ("--top-k",)),
    Case("relmem-pos-map-binary", "relative-memory {G}/result.h5 --normalize {G}/stats.npz --model {G}/model.pt --diff NN VBD --pos-map {W}/p.txt",
         ("p.txt",), files={"p.txt": BINARY}),
    # --- probe, export-embeddings, sentence, report -------------------------------------------
    Case("probe-random-model", "probe --model {W}/bad.pt --pos-map {G}/pos.txt", ("bad.pt",), files={"bad.pt": RANDOM}),
    Case("probe-pos-map-latin1", "probe --model {G}/model.pt --pos-map {W}/p.txt", ("p.txt",), files={"p.txt": LATIN1}),
    Case("probe-zero-cv", "probe --model {G}/model.pt --pos-map {G}/pos.txt --cv 0", ("--cv",)),
    Case("probe-bad-test-fraction", "probe --model {G}/model.pt --pos-map {G}/pos.txt --test-fraction 2", ("--test-fraction",)),
    Case("probe-bad-C", "probe --model {G}/model.pt --pos-map {G}/pos.txt --C a,b", ("--C",)),
    Case("probe-tagged-binary", "probe --model {G}/model.pt --tagged {W}/t.conll", ("t.conll",), files={"t.conll": BINARY}),
    Case("export-random-model", "export-embeddings --model {W}/bad.pt --out {W}/emb", ("bad.pt",), files={"bad.pt": RANDOM}),
    Case("export-missing-model", "export-embeddings --model {W}/nope.pt --out {W}/emb", ("nope.pt",)),
    Case("export-out-is-file", "export-embeddings --model {G}/model.pt --out {W}/f", ("f",), files={"f": "x"}),
    Case("export-read-only", "export-embeddings --model {G}/model.pt --out {W}/disk/emb", ("emb",), mount="ro"),
    Case("sentence-unknown-state-layer", "sentence --model {G}/model.pt --layer 4 --out {W}/s.png the cat sat",
         ("layer",)),
    Case("sentence-bad-suffix", "sentence --model {G}/model.pt --out {W}/s.bmpx the cat sat", ("s.bmpx",)),
    Case("sentence-random-stats", "sentence --model {G}/model.pt --normalize {W}/bad.npz --out {W}/s.png the cat sat",
         ("bad.npz",), files={"bad.npz": RANDOM}),
    Case("sentence-text-latin1", "sentence --model {G}/model.pt --text {W}/t.txt --out {W}/s.png", ("t.txt",),
         files={"t.txt": LATIN1}),
    Case("sentence-start-past-end", "sentence --model {G}/model.pt --text {G}/text.txt --start 100000 --out {W}/s.png",
         ("text.txt",)),
    Case("report-random-result", "report {W}/bad.h5 --out {W}/rep", ("bad.h5",), files={"bad.h5": RANDOM}),
    Case("report-bad-spectrum-delays", "report {G}/result.h5 --spectrum-delays a,b --out {W}/rep", ("--spectrum-delays",)),
    Case("report-bad-difference", "report {G}/result.h5 --difference novalue --out {W}/rep", ("--difference",)),
    Case("report-difference-random", "report {G}/result.h5 --normalize {G}/stats.npz --difference d={W}/v.npy --out {W}/rep",
         ("v.npy",), files={"v.npy": RANDOM}),
    Case("report-too-many-labels", "report {G}/result.h5 --label A --label B --out {W}/rep", ("--label",)),
    Case("report-unknown-class", "report {G}/result.h5 --classes ghosts --out {W}/rep", ("ghosts",)),
    Case("report-figure-missing", "report {G}/result.h5 --figure {W}/nope.png --out {W}/rep", ("nope.png",)),
    Case("report-figure-bad-type", "report {G}/result.h5 --figure {W}/f.bmpx --out {W}/rep", ("f.bmpx",),
         files={"f.bmpx": RANDOM}),
    Case("report-out-is-file", "report {G}/result.h5 --out {W}/f", ("f",), files={"f": "x"}),
    # --- data preparation ----------------------------------------------------------------------
    Case("prepare-binary", "prepare-tagged {W}/t.conll -o {W}/out.txt", ("t.conll",), files={"t.conll": BINARY},
         target=("out.txt", "text.txt")),
    Case("prepare-latin1", "prepare-tagged {W}/t.conll -o {W}/out.txt", ("t.conll",), files={"t.conll": LATIN1},
         target=("out.txt", "text.txt")),
    Case("prepare-empty", "prepare-tagged {W}/t.conll -o {W}/out.txt", ("t.conll",), files={"t.conll": ""},
         target=("out.txt", "text.txt")),
    Case("prepare-bad-min-fraction", "prepare-tagged {G}/tagged.conll -o {W}/out.txt --min-tag-fraction 2",
         ("--min-tag-fraction",), target=("out.txt", "text.txt")),
    Case("prepare-check-missing", "prepare-tagged {G}/tagged.conll -o {W}/out.txt --check {W}/nope.txt",
         ("nope.txt",), target=("out.txt", "text.txt")),
    Case("prepare-read-only", "prepare-tagged {G}/tagged.conll -o {W}/disk/out.txt", ("out.txt",), mount="ro",
         target=("disk/out.txt", "text.txt")),
    Case("convert-random-vectors", "convert-embeddings {W}/v.bin --vocab {G}/vocab.txt -o {W}/e.npz", ("v.bin",),
         files={"v.bin": RANDOM}, target=("e.npz", "stats.npz")),
    Case("convert-bad-header", "convert-embeddings {W}/v.txt --vocab {G}/vocab.txt -o {W}/e.npz", ("v.txt",),
         files={"v.txt": "three four\nthe 1 2 3 4\n"}, target=("e.npz", "stats.npz")),
    Case("convert-short-row", "convert-embeddings {W}/v.txt --vocab {G}/vocab.txt -o {W}/e.npz", ("v.txt",),
         files={"v.txt": "2 4\nthe 1 2 3 4\ncat 1 2\n"}, target=("e.npz", "stats.npz")),
    Case("convert-vocab-duplicates", "convert-embeddings {G}/vectors.txt --vocab {W}/v.tsv -o {W}/e.npz", ("v.tsv",),
         files={"v.tsv": "the\t0\nthe\t1\n"}, target=("e.npz", "stats.npz")),
    Case("convert-vocab-gap", "convert-embeddings {G}/vectors.txt --vocab {W}/v.tsv -o {W}/e.npz", ("v.tsv",),
         files={"v.tsv": "the\t0\ncat\t2\n"}, target=("e.npz", "stats.npz")),
    Case("convert-no-vocab", "convert-embeddings {G}/vectors.txt -o {W}/e.npz", ("--vocab",),
         target=("e.npz", "stats.npz")),
    Case("show-classes-vocab-binary", "show-classes --vocab {W}/v.tsv --classes ptb --pos-map {G}/pos.txt",
         ("v.tsv",), files={"v.tsv": BINARY}),
    Case("show-classes-vocab-gap", "show-classes --vocab {W}/v.tsv --classes ptb --pos-map {G}/pos.txt",
         ("v.tsv",), files={"v.tsv": "<unk>\t0\nthe\t5\n"}),
    Case("show-classes-text-latin1", "show-classes --vocab {G}/vocab.txt --text {W}/t.txt --classes ptb --pos-map {G}/pos.txt",
         ("t.txt",), files={"t.txt": LATIN1}),
    # --- legacy ---------------------------------------------------------------------------------
    Case("legacy-average-missing-delay", "legacy-average {G}/orig 9", ("9",)),
    Case("legacy-average-negative-delay", "legacy-average {G}/orig -1", ("-1",)),
    Case("legacy-average-random-npy", "legacy-average {W}/g 0", ("0.npy",),
         files={"g": lambda g, w: shutil.copytree(g / "orig", w / "g"),
                "g/timestep_all/delay_0/0.npy": RANDOM}),
    Case("legacy-average-class-without-map", "legacy-average {G}/orig 0 --classes {G}/nouns.txt", ("--pos-map",)),
    Case("legacy-svs-random-dnorm", "legacy-svs {G}/orig {W}/d.npy", ("d.npy",), files={"d.npy": RANDOM}),
    Case("legacy-export-random-result", "legacy-export {W}/bad.h5 {W}/out", ("bad.h5",), files={"bad.h5": RANDOM}),
    Case("legacy-export-unknown-class", "legacy-export {G}/result.h5 {W}/out --classes ghosts", ("ghosts",)),
    Case("legacy-np2npz-empty", "legacy-np2npz {W}/sub", ("sub",), files={"sub/readme.txt": "x"}),
    Case("legacy-np2npz-random", "legacy-np2npz {W}/sub", ("1.npy",), files={"sub/1.npy": RANDOM, "sub/0.npy": lambda g, w: np.save(
        w / "sub/0.npy", np.ones((2, 2)))}),
    # --- synth, demo -----------------------------------------------------------------------------
    Case("synth-bad-json", "synth {W}/out --config {W}/c.json", ("c.json",), files={"c.json": "{not json"}),
    Case("synth-binary-json", "synth {W}/out --config {W}/c.json", ("c.json",), files={"c.json": BINARY}),
    Case("synth-not-a-config", "synth {W}/out --config {W}/c.json", ("c.json", "triggers"),
         files={"c.json": json.dumps({"bogus": 1})}),
    Case("synth-unknown-key", "synth {W}/out --config {W}/c.json", ("c.json", "bogus"),
         files={"c.json": lambda g, w: (w / "c.json").write_text(json.dumps(
             {**__import__("dataclasses").asdict(__import__("stategrad.synth").synth.PRESETS["demo"]),
              "bogus": 1}))}),
    Case("synth-bad-trigger", "synth {W}/out --trigger nonsense", ("--trigger",)),
    Case("synth-negative-noise", "synth {W}/out --noise -0.5", ("noise",)),
    Case("synth-bad-scale", "synth {W}/out --scale x", ("--scale",)),
    Case("synth-out-is-file", "synth {W}/f", ("f",), files={"f": "x"}),
    Case("demo-zero-threads", "demo --threads -1 --out {W}/d", ("--threads",)),
    Case("demo-out-is-file", "demo --out {W}/f", ("f",), files={"f": "x"}),
    Case("unknown-command", "frobnicate", ("frobnicate",)),
    # --- more writers on a full or read-only disk ----------------------------------------------
    Case("legacy-export-read-only", "legacy-export {G}/result.h5 {W}/disk/out", ("out",), mount="ro"),
    Case("synth-read-only", "synth {W}/disk/corpus --train-tokens 500 --valid-tokens 100 --test-tokens 100",
         ("corpus",), mount="ro"),
    Case("sentence-read-only", "sentence --model {G}/model.pt --out {W}/disk/s.png the cat sat", ("s.png",),
         mount="ro", target=("disk/s.png", "figure.png")),
    Case("relmem-csv-full-disk", "relative-memory {G}/result.h5 --normalize {G}/stats.npz --vector "
         "{G}/vector.npy --csv {W}/disk/r.csv", ("r.csv",), mount="full", target=("disk/r.csv", "text.txt"),
         subprocess=True),
    Case("report-read-only", "report {G}/result.h5 --out {W}/disk/rep", ("rep",), mount="ro"),
    Case("convert-read-only", "convert-embeddings {G}/vectors.txt --vocab {G}/vocab.txt -o {W}/disk/e.npz",
         ("e.npz",), mount="ro", target=("disk/e.npz", "stats.npz")),
    Case("prepare-full-disk", "prepare-tagged {G}/tagged.conll -o {W}/disk/out.txt", ("out.txt",),
         mount="full", target=("disk/out.txt", "text.txt"), subprocess=True),
    Case("convert-full-disk", "convert-embeddings {G}/vectors.txt --vocab {G}/vocab.txt -o {W}/disk/e.npz",
         ("e.npz",), mount="full", target=("disk/e.npz", "stats.npz"), subprocess=True),
    Case("legacy-average-read-only", "legacy-average {W}/disk/g 0", ("delay_0",), mount="ro",
         files={"disk/g": lambda g, w: shutil.copytree(g / "orig/timestep_all/delay_0", w / "disk/g/delay_0")}),
    Case("stats-legacy-prefix-read-only", "embedding-stats --model {G}/model.pt --text {G}/text.txt "
         "--legacy-prefix {W}/disk/emb", ("emb",), mount="ro"),
    Case("merge-truncated-hdf5", "merge {G}/result.h5 {W}/cut_result.h5 --out {W}/out.h5", ("cut_result.h5",),
         files={"cut": _truncated("result.h5", 0.7)}, target=GOUT, subprocess=True),
    Case("synth-full-disk", "synth {W}/disk/corpus --train-tokens 20000 --valid-tokens 100 --test-tokens 100",
         ("disk/corpus",), mount="full", subprocess=True),
    # --- more option values ----------------------------------------------------------------------
    Case("gradients-gru-has-no-cell", "gradients --model {W}/gru.pt --text {G}/text.txt -D 3 --state cell "
         "--out {W}/out.h5", ("cell",), files={"gru.pt": _gru_checkpoint}, target=GOUT),
    _gradients("--classes ptb: --pos-map {G}/pos.txt", "empty-class-subset", names=("ptb:",)),
    Case("gradients-vocab-missing-unk", "gradients --model {G}/state_dict.pt --vocab {W}/v.txt --text {W}/t.txt "
         "-D 2 --out {W}/out.h5", ("t.txt", "<unk>"), target=GOUT,
         files={"v.txt": "".join(f"w{i}\t{i}\n" for i in range(13)), "t.txt": "w1 zebra w2\n"}),
    Case("prepare-unknown-encoding", "prepare-tagged {G}/tagged.conll -o {W}/out.txt --encoding no-such-codec",
         ("--encoding",), target=("out.txt", "text.txt")),
    Case("show-classes-unknown-encoding", "show-classes --vocab {G}/vocab.txt --encoding no-such-codec",
         ("--encoding",)),
    # --- other branches' areas --------------------------------------------------------------------
    Case("gradients-nan-model", "gradients --model {W}/bad.pt --text {G}/text.txt -D 3 --no-progress "
         "--out {W}/out.h5", ("bad.pt",), target=GOUT,
         files={"bad.pt": _checkpoint(lambda p: p["state_dict"]["embedding.weight"].fill_(float("nan")))}),
    Case("memory-normalize-other-model", "memory {G}/result.h5 --normalize {W}/bad.npz", ("bad.npz",),
         files={"bad.npz": _other_model_stats}),
]


# --- running a row -----------------------------------------------------------------------------

def _write(g: Path, w: Path, files: dict[str, Content]) -> None:
    for name, content in files.items():
        path = w / name
        if callable(content):
            content(g, w)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)


def _mount(disk: Path, kind: str) -> None:
    disk.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()}): full-disk and "
                    "read-only cases need root with mount permission")


def _fill_or_lock(disk: Path, kind: str) -> None:
    if kind == "ro":
        subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
        return
    # Fill the rest of the disk: the good target already there keeps its bytes.
    with open(disk / "filler", "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 1024)
                f.flush()
        except OSError:
            pass


def _snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(root.rglob("*"))}


def _run(case: Case, args: list[str]) -> tuple[int, str]:
    if case.subprocess:
        done = subprocess.run([sys.executable, "-m", "stategrad", *args], capture_output=True,
                              text=True, timeout=120, env={**os.environ, "STATEGRAD_DEBUG": ""})
        return done.returncode, done.stdout + done.stderr
    result = CliRunner().invoke(main, args, prog_name="stategrad")
    if not isinstance(result.exception, SystemExit):
        import traceback

        detail = "".join(traceback.format_exception(result.exception)) if result.exception else ""
        pytest.fail(f"no SystemExit but {result.exception!r}\n{result.output}\n{detail}")
    return result.exit_code, result.output


def _params():
    for case in CASES:
        marks = [pytest.mark.xfail(strict=True, reason=f"pending: {case.pending}")] if case.pending else []
        yield pytest.param(case, id=case.id, marks=marks)


def test_the_table_is_large_and_unique():
    assert len(CASES) >= 100
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", list(_params()))
def test_malformed_input(case: Case, good: Path, tmp_path: Path):
    w = tmp_path / "w"
    w.mkdir()
    disk = w / "disk"
    if case.mount:
        _mount(disk, case.mount)
    try:
        _check(case, good, w, disk)
    finally:
        if case.mount:
            subprocess.run(["umount", str(disk)], capture_output=True)


def _check(case: Case, good: Path, w: Path, disk: Path) -> None:
    _write(good, w, case.files)
    if case.target:
        shutil.copy(good / case.target[1], w / case.target[0])
    if case.mount:
        _fill_or_lock(disk, case.mount)
    before, good_before = _snapshot(w), _snapshot(good)
    args = case.args.format(G=good, W=w).split()
    code, output = _run(case, args)
    assert code in (1, 2), f"exit {code}\n{output}"
    assert "Traceback" not in output, output
    # the handler's line for a bug: an unexpected exception is not a clear message
    assert "STATEGRAD_DEBUG" not in output, output
    # one line says what is wrong, and it names the file or option
    errors = [line for line in output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, output
    for name in case.names:
        assert name in errors[0], f"{name!r} not named in:\n{output}"
    after = _snapshot(w)
    new = [p for p in after if p not in before
           and not any(Path(p).match(a) or p.startswith(a.rstrip("*")) for a in case.allowed)]
    assert not new, f"left behind: {new}"
    assert not [p for p in after if p.endswith(".tmp") or ".tmp" in Path(p).name], after
    changed = [p for p in before if p in after and before[p] != after[p] and p != "disk/filler"]
    assert not changed or case.allowed, f"changed: {changed}"
    if case.target:
        assert after.get(case.target[0]) == good_before[case.target[1]], "the earlier output changed"
    assert _snapshot(good) == good_before, "a good input was modified"


def _broken_engine(monkeypatch, good: Path, tmp_path: Path):
    """A bug stand-in: the engine raises KeyError, which no input explains."""
    import stategrad.gradients as gradients  # the command imports the engine from here

    def broken(*args, **kwargs):
        raise KeyError("internal")

    monkeypatch.setattr(gradients, "StateGradientEngine", broken)
    return CliRunner().invoke(main, ["gradients", "--model", str(good / "model.pt"), "--text",
                                     str(good / "text.txt"), "-D", "2", "--out",
                                     str(tmp_path / "o.h5")], prog_name="stategrad")


def test_debug_variable_shows_the_traceback(monkeypatch, good: Path, tmp_path: Path):
    """STATEGRAD_DEBUG=1 re-raises, so a bug report can carry the traceback."""
    monkeypatch.setenv("STATEGRAD_DEBUG", "1")
    result = _broken_engine(monkeypatch, good, tmp_path)
    assert isinstance(result.exception, KeyError), result.output


def test_debug_variable_adds_the_traceback_of_an_input_error(monkeypatch, tmp_path: Path):
    (tmp_path / "bad.h5").write_bytes(RANDOM)
    monkeypatch.setenv("STATEGRAD_DEBUG", "1")
    result = CliRunner().invoke(main, ["inspect", str(tmp_path / "bad.h5")], prog_name="stategrad")
    assert result.exit_code == 1
    assert "Traceback" in result.output and "ResultError" in result.output
    assert result.output.strip().splitlines()[-1].startswith("Error:")


def test_a_bug_gets_one_line_and_the_hint(monkeypatch, good: Path, tmp_path: Path):
    monkeypatch.delenv("STATEGRAD_DEBUG", raising=False)
    result = _broken_engine(monkeypatch, good, tmp_path)
    assert isinstance(result.exception, SystemExit) and result.exit_code == 1
    assert "Traceback" not in result.output
    assert "KeyError" in result.output and "STATEGRAD_DEBUG=1" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_good_inputs_work(good: Path, tmp_path: Path):
    """The fixtures are good: the same commands succeed on them (so a failure above is the
    malformed input's doing)."""
    for args in (f"inspect {good}/result.h5", f"svd {good}/result.h5 --normalize {good}/stats.npz --top 3",
                 f"memory {good}/result.h5 --ci jackknife",
                 f"{GRAD} --out {tmp_path}/o.h5",
                 f"show-classes --vocab {good}/vocab.txt --classes ptb --pos-map {good}/pos.txt"):
        result = CliRunner().invoke(main, args.format(G=good, W=tmp_path).split(), prog_name="stategrad")
        assert result.exit_code == 0, (args, result.output)
