"""`stategrad train` with model.cell = "mamba": learning, checkpoints, resume, eval."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner
from test_training import batches_per_epoch, params_of, write_corpus

from stategrad.cli import main as cli
from stategrad.lm import ConfigError, MambaLM, load_trained, read_checkpoint, train, validate_config

torch.set_num_threads(1)

MODEL = {"cell": "mamba", "hidden_size": 16, "d_state": 4, "d_conv": 3, "expand": 2,
         "init_scale": 0.1, "dropout": 0.1}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("corpus"), n_train=500, n_eval=80)


def config(corpus, save, **training):
    options = {"batch_size": 8, "num_steps": 10, "max_max_epoch": 2, "optimizer": "adam",
               "learning_rate": 0.01, "seed": 5}
    options.update(training)
    return validate_config({"data": {"path": str(corpus)}, "model": MODEL,
                            "training": options, "output": {"save_path": str(save)}})


def test_mamba_trains_and_its_checkpoint_is_plain(corpus, tmp_path):
    summary = train(config(corpus, tmp_path / "run", max_max_epoch=3), progress=False)
    ppls = [m.valid_ppl for m in summary.history]
    vocab_size = len(read_checkpoint(tmp_path / "run" / "best.pt")["vocab"])
    # a uniform guess scores the vocabulary size; the grammar allows far less
    assert ppls[-1] < vocab_size / 4 and ppls[-1] < ppls[0], ppls
    payload = torch.load(tmp_path / "run" / "best.pt", weights_only=True)
    assert payload["spec"]["cell"] == "mamba"
    assert (payload["spec"]["d_state"], payload["spec"]["d_conv"], payload["spec"]["expand"]) \
        == (4, 3, 2)
    model = load_trained(tmp_path / "run" / "best.pt")
    assert isinstance(model.module, MambaLM)


def test_mamba_resume_mid_epoch_is_identical(corpus, tmp_path):
    straight = train(config(corpus, tmp_path / "a"), progress=False)
    calls = {"n": 0}
    per_epoch = batches_per_epoch(corpus)

    def stop_in_epoch_2() -> bool:
        calls["n"] += 1
        return calls["n"] == per_epoch + 1 + 4

    cut = train(config(corpus, tmp_path / "b"), progress=False, should_stop=stop_in_epoch_2)
    assert cut.interrupted
    tr = torch.load(tmp_path / "b" / "last.pt", weights_only=True)["training"]
    conv, ssm = tr["recurrent_state"]  # the carried (conv, ssm) state, per layer
    assert conv.shape == (1, 8, 32, 2) and ssm.shape == (1, 8, 32, 4)
    resumed = train(config(corpus, tmp_path / "b"), resume=True, progress=False)
    assert [m.valid_ppl for m in resumed.history] == [m.valid_ppl for m in straight.history]
    a, b = params_of(tmp_path / "a" / "last.pt"), params_of(tmp_path / "b" / "last.pt")
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_train_and_eval_commands_with_mamba(corpus, tmp_path):
    toml = tmp_path / "m.toml"
    toml.write_text(f"""
[data]
path = "{corpus}"
[model]
cell = "mamba"
hidden_size = 12
d_state = 4
d_conv = 2
expand = 1
[training]
batch_size = 8
num_steps = 10
optimizer = "adam"
learning_rate = 0.01
[output]
save_path = "{tmp_path / 'out'}"
""")
    runner = CliRunner()
    result = runner.invoke(cli, ["train", str(toml), "--no-progress", "--threads", "1"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(cli, ["eval", str(toml), "--split", "valid", "--no-progress"])
    assert result.exit_code == 0, result.output
    valid_ppl = float(result.output.split("perplexity:")[1].split()[0])
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert valid_ppl == pytest.approx(metrics[-1]["valid_ppl"], abs=1e-3)


def test_mamba_config_errors_name_the_key(corpus, tmp_path):
    with pytest.raises(ConfigError, match="model.embedding_size"):
        validate_config({"model": {"cell": "mamba", "hidden_size": 16, "embedding_size": 8}})
    with pytest.raises(ConfigError, match="model.d_conv"):
        validate_config({"model": {"cell": "mamba", "d_conv": 0}})
