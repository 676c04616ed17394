"""The command starts fast: listing the commands and their help, and reading a result
with ``inspect``, load no heavy library.  Checked by what is imported (``sys.modules``
in a fresh interpreter), not by a clock: ``benchmarks/startup.py`` measures the time."""

from __future__ import annotations

import collections
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from stategrad.data import Vocabulary
from stategrad.gradients import compute_state_gradients
from stategrad.lm import RNNLM, ModelSpec, load_model, save_checkpoint

SRC = Path(__file__).resolve().parents[1] / "src"
HEAVY = ("torch", "matplotlib", "sklearn", "scipy")

# Runs ``main`` with each argument list in a fresh interpreter and prints, as JSON, the
# heavy libraries it loaded and the exit codes (0 for --help, 0 for inspect).
_PROBE = """
import json, sys
from stategrad.cli import main
codes = []
for args in json.loads(sys.argv[1]):
    try:
        main(args, prog_name="stategrad")
    except SystemExit as exc:
        codes.append(exc.code)
loaded = sorted({m.split(".")[0] for m in sys.modules} & set(json.loads(sys.argv[2])))
print(json.dumps({"codes": codes, "loaded": loaded}))
"""


def _probe(argv: list[list[str]], heavy=HEAVY, cwd=None) -> dict:
    done = subprocess.run([sys.executable, "-c", _PROBE, json.dumps(argv), json.dumps(heavy)],
                          capture_output=True, text=True, cwd=cwd,
                          env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_probe_sees_a_heavy_import():
    # the check below could pass by looking at the wrong thing: a command that does import
    # torch (eval of a missing file still imports it to read the model) must show up
    found = _probe([["eval", "--model", "missing.pt", "--split", "x"]])
    assert "torch" in found["loaded"]


def test_import_and_help_load_no_heavy_library():
    from stategrad.cli import main

    commands = sorted(main.commands)
    found = _probe([["--help"]] + [[name, "--help"] for name in commands])
    assert found["codes"] == [0] * (len(commands) + 1)
    assert found["loaded"] == [], f"--help imports {found['loaded']}: import them in the command"


@pytest.fixture(scope="module")
def result_file(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("startup")
    words = ["the", "cat", "sat", "on", "mat"]
    vocab = Vocabulary.from_counts(collections.Counter({w: 9 - i for i, w in enumerate(words)}
                                                      | {"<eos>": 3}))
    torch.manual_seed(0)
    module = RNNLM(ModelSpec(vocab_size=len(vocab), embedding_size=3, hidden_size=4, cell="lstm"))
    save_checkpoint(tmp / "model.pt", module, vocab, config={})
    rng = np.random.default_rng(0)
    tokens = np.array([vocab[w] for w in rng.choice(words, 40)], dtype=np.int64)
    res = compute_state_gradients(load_model(tmp / "model.pt"), tokens, max_delay=3)
    return res.save(tmp / "result.h5")


def test_inspect_reads_a_result_without_torch(result_file):
    found = _probe([["inspect", str(result_file)], ["inspect", "--json", str(result_file)]])
    assert found["codes"] == [0, 0]
    assert found["loaded"] == []
