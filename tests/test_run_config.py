"""`stategrad run` with the original's .config, as its users meet it: a model not trained
yet, mistakes named by the keys they wrote, each perplexity printed once."""

from __future__ import annotations

import re

import numpy as np
import pytest
from click.testing import CliRunner

from stategrad.cli import main
from stategrad.legacy import config_key_names

WORDS = "the cat sat on a mat dog ran".split()


def run(args):
    return CliRunner().invoke(main, [str(a) for a in args], prog_name="stategrad")


@pytest.fixture()
def setup(tmp_path):
    rng = np.random.default_rng(0)
    data = tmp_path / "data"
    data.mkdir()
    for name, n in (("train", 200), ("valid", 40), ("test", 40)):
        (data / f"{name}.txt").write_text(
            "".join(" ".join(rng.choice(WORDS, 8)) + "\n" for _ in range(n)))
    config = tmp_path / "a.config"
    config.write_text(f"data_path {data}/\nsave_path {tmp_path / 'model'}/\nsize 8\n"
                      "batch_size 4\nnum_steps 5\nmax_epoch 1\nmax_max_epoch 1\n"
                      "learning_rate 1\ndropout 1\ninit_scale 0.1\n")
    return tmp_path, config


def _variant(config, tmp_path, old, new):
    path = tmp_path / f"v{abs(hash((old, new)))}.config"
    path.write_text(re.sub(old, new, config.read_text(), flags=re.M))
    return path


def test_errors_name_the_keys_of_the_config_file(setup):
    tmp_path, config = setup
    cases = [(r"^size 8$", "size 0", "size", "model.hidden_size"),
             (r"^data_path .*$", "", "data_path", "data.path"),
             (r"^data_path .*$", f"data_path {tmp_path / 'none'}/", "data_path", "data.path"),
             (r"^batch_size 4$", "batch_size 0", "batch_size", "training.batch_size")]
    for old, new, key, toml_key in cases:
        path = _variant(config, tmp_path, old, new)
        for args in (["run", "--config", path], ["train", path]):
            r = run(args + ["--no-progress"])
            assert r.exit_code == 1 and key in r.output, (args, r.output)
            assert toml_key not in r.output and "data." not in r.output, (args, r.output)
            assert len(r.output.strip().splitlines()) == 1, r.output
    # a TOML file is told in its own keys
    toml = tmp_path / "c.toml"
    toml.write_text("[model]\nhidden_size = 0\n")
    r = run(["train", toml])
    assert r.exit_code == 1 and "model.hidden_size" in r.output, r.output


def test_every_converted_key_names_its_config_key():
    # the translation covers the keys named in errors; an unrelated name is left alone
    assert config_key_names("model.hidden_size: too small") == "size: too small"
    assert config_key_names("model.pt and data.path") == "model.pt and data_path"
    assert config_key_names("training.seed: x") == "training.seed: x"  # no .config key


def test_a_model_not_trained_yet(setup):
    tmp_path, config = setup
    r = run(["run", "--config", config, "--notrain", "--no-progress"])
    assert r.exit_code == 1 and "stategrad train" not in r.output, r.output
    assert "without --notrain" in r.output, r.output


def test_each_perplexity_is_printed_once(setup):
    tmp_path, config = setup
    r = run(["run", "--config", config, "--no-progress", "--threads", 1])
    assert r.exit_code == 0, r.output
    test_line = [line for line in r.stdout.splitlines() if line.startswith("Test Perplexity:")]
    assert len(test_line) == 1 and r.stdout.count("Epoch: 1 Valid Perplexity:") == 1, r.stdout
    number = test_line[0].split(":")[1].strip()
    assert number not in r.stderr and "Perplexity:" not in r.stderr, r.stderr
    r = run(["run", "--config", config, "--notrain", "--no-progress"])
    assert r.exit_code == 0, r.output
    valid = [line for line in r.stdout.splitlines() if line.startswith("Valid Perplexity:")]
    assert len(valid) == 1 and r.stdout.count("Test Perplexity:") == 1, r.stdout
    assert valid[0].split(":")[1].strip() not in r.stderr, r.stderr
