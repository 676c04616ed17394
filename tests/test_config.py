"""Configuration: TOML schema and errors, and the original's whitespace .config format."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from stategrad.legacy import (
    convert_legacy_value,
    legacy_to_run,
    load_config,
    load_legacy_config,
    parse_legacy_config,
)
from stategrad.lm import (
    ConfigError,
    TrainConfig,
    TrainingOptions,
    data_files,
    learning_rate_for_epoch,
    load_toml_config,
    validate_config,
)

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"
SPEC = REPO.parent / "shared" / "docs" / "original-behaviour.md"


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# --- the original's format ---------------------------------------------------------------

def test_legacy_value_conversion_order():
    assert convert_legacy_value("True") is True
    assert convert_legacy_value("False") is False
    assert convert_legacy_value("5") == 5 and isinstance(convert_legacy_value("5"), int)
    assert convert_legacy_value("0.05") == 0.05
    assert convert_legacy_value("1e-3") == 0.001
    assert convert_legacy_value("true") == "true"  # only the capitalised Python spelling
    assert convert_legacy_value("LSTM") == "LSTM"


def test_legacy_rules_last_token_and_short_lines(tmp_path):
    path = write(tmp_path / "a.config", "size ` 256\nlonely\n\n  \nnum_steps a b 7\n"
                 "dropout\t0.75\nnum_steps 9\n")
    raw = parse_legacy_config(path)
    # last token is the value, short lines are ignored, a later line wins
    assert raw == {"size": 256, "num_steps": 9, "dropout": 0.75}


def test_shipped_baseline_config_with_backtick():
    run = load_legacy_config(CONFIGS / "ptb-norm-wsj_64e_256h_steps200.config")
    c = run.config
    assert "`" in (CONFIGS / "ptb-norm-wsj_64e_256h_steps200.config").read_text()
    assert c.model.hidden_size == 256
    assert c.model.embedding_size == 64
    assert c.model.cell == "lstm"
    assert c.model.dropout == pytest.approx(0.5)  # keep 0.5 -> drop 0.5
    assert c.model.embedding_dropout is False  # no_emb_dropout True
    assert c.model.init_scale == 0.05
    t = c.training
    assert (t.num_steps, t.batch_size, t.max_epoch, t.max_max_epoch) == (200, 20, 6, 39)
    assert (t.learning_rate, t.lr_decay, t.max_grad_norm) == (1.0, 0.8, 5.0)
    assert t.optimizer == "sgd" and t.softmax == "full" and t.early_stop is None
    assert c.output.save_path == "models/ptb-norm-wsj_64e_256h_steps200/"
    assert c.output.log_file == str(Path("logs") / "ptb-norm-wsj_64e_256h_steps200.log")
    assert any("vocab_size" in n for n in run.notes)


def test_toml_equivalent_of_baseline_is_identical():
    legacy = load_config(CONFIGS / "ptb-norm-wsj_64e_256h_steps200.config")
    toml = load_config(CONFIGS / "ptb-norm-wsj_64e_256h_steps200.toml")
    assert legacy.to_dict() == toml.to_dict()


def test_example_toml_is_valid():
    c = load_toml_config(CONFIGS / "example.toml")
    assert c.data.path == "data/my-corpus"
    assert c.model.dropout == 0.5


def test_legacy_keep_probability_converted():
    run = legacy_to_run({"save_path": "m", "dropout": 0.75})
    assert run.config.model.dropout == pytest.approx(0.25)
    run = legacy_to_run({"save_path": "m", "dropout": 1})
    assert run.config.model.dropout == 0.0
    with pytest.raises(ConfigError, match="KEEP probability"):
        legacy_to_run({"save_path": "m", "dropout": 0})


def test_legacy_vocab_k_file_names():
    run = legacy_to_run({"save_path": "m", "data_path": "d", "vocab": 50})
    files = data_files(run.config)
    assert files.train == Path("d") / "train_50k-unk.txt"
    assert files.valid == Path("d") / "valid_50k-unk.txt"
    assert files.test == Path("d") / "test_50k-unk.txt"
    plain = data_files(legacy_to_run({"save_path": "m", "data_path": "d", "vocab": False}).config)
    assert plain.train == Path("d") / "train.txt"


def test_legacy_trainers_and_early_stop():
    run = legacy_to_run({"save_path": "m", "trainer": "earlyStopping", "early_stop": 3})
    assert run.config.training.early_stop == 3
    with pytest.raises(ConfigError, match="early_stop"):
        legacy_to_run({"save_path": "m", "trainer": "earlyStopping"})
    run = legacy_to_run({"save_path": "m", "trainer": "trainer", "early_stop": 3})
    assert run.config.training.early_stop is None and run.notes
    with pytest.raises(ConfigError, match="trainer"):
        legacy_to_run({"save_path": "m", "trainer": "fancy"})


@pytest.mark.parametrize("raw, pattern", [
    ({"random": True}, "seeded"),
    ({"softmax": "interp"}, "'full' and 'sampled'"),
    ({"basic_cell": "LSTMP"}, "LSTM, GRU or RNN"),
    ({"save_embedding": "emb/"}, "other_test"),
    ({"sizee": 3}, "did you mean 'size'"),
    ({"optimizer": "rmsprop"}, "x.config: optimizer:"),  # the .config key, not the TOML one
    ({"num_steps": 0}, "x.config: num_steps:"),
])
def test_legacy_rejections_name_the_key(raw, pattern):
    with pytest.raises(ConfigError, match=re.escape(pattern) if "'" in pattern else pattern):
        legacy_to_run({"save_path": "m", **raw}, "x.config")


def test_legacy_run_options():
    run = legacy_to_run({"save_path": "m", "other_test": "t.txt", "save_embedding": "emb",
                         "valid_as_test": True, "grad_interm": "cell", "max_delay": 5,
                         "time_step": 0, "grad_dir": "g"})
    assert run.other_test == "t.txt" and run.save_embedding == "emb" and run.valid_as_test
    assert run.gradients == {"grad_interm": "cell", "max_delay": 5, "time_step": 0, "grad_dir": "g"}


def test_legacy_log_file_rules():
    c = legacy_to_run({"save_path": "models/x/", "log_dir": "logs", "log": "runs/name"}).config
    assert c.output.log_file == str(Path("logs") / "name.log")
    c = legacy_to_run({"save_path": "models/x/", "log_dir": "logs"}).config
    assert c.output.log_file == str(Path("logs") / "x.log")


def test_legacy_vocab_and_text_options():
    c = legacy_to_run({"save_path": "m", "read_vocab_from_file": "v.dict", "save_dict": "out",
                       "encoding": "latin-1", "no_eos": True, "num_layers": 2,
                       "embedding_size": 8, "size": 16, "optimizer": "adam",
                       "pretrained_embeddings": "emb", "fixed_embeddings": True,
                       "forget_bias": 1, "softmax": "sampled"}).config
    assert c.data.vocab_file == "v.dict" and c.data.save_vocab == "out.dict"
    assert c.data.encoding == "latin-1" and c.data.no_eos is True
    assert (c.model.num_layers, c.model.embedding_size, c.model.hidden_size) == (2, 8, 16)
    assert c.model.pretrained_embeddings == "emb" and c.model.fixed_embeddings
    assert c.model.forget_bias == 1.0 and c.training.optimizer == "adam"
    assert c.training.softmax == "sampled"


@pytest.mark.skipif(not SPEC.is_file(), reason="../shared/docs/original-behaviour.md not present")
def test_every_documented_key_is_supported_or_rejected_with_reason():
    text = SPEC.read_text()
    block = text.split("Keys in the shipped configs:")[1].split("- `dropout`")[0]
    keys = set(re.findall(r"`?([a-z_]+)`?", block.replace("Also read by the code:", " ")))
    keys -= {"also", "read", "by", "the", "code"}
    assert {"save_path", "early_stop", "random", "grad_dir", "no_eos"} <= keys
    sample = {"save_path": "m", "log_dir": "l", "log": "x", "data_path": "d", "vocab_size": 5,
              "vocab": False, "basic_cell": "GRU", "num_layers": 1, "embedding_size": 4,
              "size": 4, "num_steps": 3, "init_scale": 0.1, "learning_rate": 1,
              "max_grad_norm": 5, "batch_size": 2, "forget_bias": 0, "dropout": 0.5,
              "max_epoch": 1, "max_max_epoch": 2, "lr_decay": 0.5, "optimizer": "sgd",
              "trainer": "earlyStopping", "softmax": "full", "no_emb_dropout": True,
              "pretrained_embeddings": "e", "fixed_embeddings": True, "other_test": "o",
              "save_embedding": "s", "grad_interm": "cell", "time_step": 0, "max_delay": 3,
              "grad_dir": "g", "encoding": "utf-8", "read_vocab_from_file": "v",
              "save_dict": "sd", "valid_as_test": True, "no_eos": True, "random": True,
              "early_stop": 2}
    assert keys <= set(sample), keys - set(sample)
    for key in sorted(keys):
        raw = {"save_path": "m", key: sample[key]}
        if key == "trainer":
            raw["early_stop"] = 2
        if key == "save_embedding":
            raw["other_test"] = "o"
        if key == "vocab":
            raw["data_path"] = "d"
        try:
            legacy_to_run(raw, "x.config")
        except ConfigError as exc:
            # a rejection must say why, not just "unknown key"
            assert "unknown key" not in str(exc), key
            assert key in str(exc) and len(str(exc)) > 40, str(exc)


# --- TOML --------------------------------------------------------------------------------

def test_toml_full_round_trip(tmp_path):
    path = write(tmp_path / "c.toml", """
[data]
path = "corpus"
vocab_size = 500
[model]
cell = "gru"
hidden_size = 32
dropout = 0.25
[training]
optimizer = "adagrad"
learning_rate = 1
max_grad_norm = 0.5
early_stop = 2
softmax = "sampled"
num_sampled = 8
[output]
save_path = "out"
""")
    c = load_config(path)
    assert c.model.cell == "gru" and c.model.emb_size == 32  # embedding_size defaults to size
    assert c.training.learning_rate == 1.0 and isinstance(c.training.learning_rate, float)
    assert c.training.early_stop == 2 and c.training.num_sampled == 8
    assert validate_config(c.to_dict()) == c
    assert TrainConfig.from_dict(c.to_dict()).to_dict() == c.to_dict()


@pytest.mark.parametrize("text, expected", [
    ("[model]\nhiden_size = 3\n", "unknown key 'hiden_size' in [model]; did you mean 'hidden_size'?"),
    ("[training]\nlearnig_rate = 0.1\n", "did you mean 'learning_rate'?"),
    ("[modle]\n", "did you mean 'model'?"),
    ("[model]\nnum_steps = 3\n", "it belongs in [training]"),
    ("[model]\nsize = 3\n", "use model.hidden_size"),
    ("[model]\ndropout_keep = 0.5\n", "DROP probability"),
    ("hidden_size = 3\n", "it belongs in [model]"),
])
def test_toml_unknown_keys_name_closest(tmp_path, text, expected):
    with pytest.raises(ConfigError) as info:
        load_toml_config(write(tmp_path / "c.toml", text))
    assert expected in str(info.value)
    assert str(tmp_path / "c.toml") in str(info.value)


@pytest.mark.parametrize("text, key", [
    ("[training]\nbatch_size = \"20\"\n", "training.batch_size"),
    ("[training]\nbatch_size = 2.5\n", "training.batch_size"),
    ("[training]\nlearning_rate = -1.0\n", "training.learning_rate"),
    ("[training]\nlearning_rate = inf\n", "training.learning_rate"),
    ("[model]\ndropout = 1.0\n", "model.dropout"),
    ("[model]\ncell = \"lsmt\"\n", "model.cell"),
    ("[model]\nembedding_dropout = 1\n", "model.embedding_dropout"),
    ("[model]\nfixed_embeddings = true\n", "model.fixed_embeddings"),
    ("[training]\ndevice = \"gpu\"\n", "training.device"),
    ("[data]\nencoding = \"no-such-codec\"\n", "data.encoding"),
    ("[training]\nlr_decay = 1.5\n", "training.lr_decay"),
])
def test_toml_type_and_range_errors_name_the_key(tmp_path, text, key):
    with pytest.raises(ConfigError) as info:
        load_toml_config(write(tmp_path / "c.toml", text))
    message = str(info.value)
    assert key in message
    assert len(message.splitlines()) <= 3  # short, not pydantic's page


def test_toml_syntax_error_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_toml_config(write(tmp_path / "c.toml", "[model\n"))
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.toml")


def test_explicit_files_override_path():
    c = validate_config({"data": {"path": "d", "test": "other.txt"}})
    files = data_files(c)
    assert files.train == Path("d/train.txt") and files.test == Path("other.txt")


def test_learning_rate_schedule():
    t = TrainingOptions(learning_rate=1.0, lr_decay=0.8, max_epoch=6)
    rates = [learning_rate_for_epoch(t, i) for i in range(9)]
    assert rates[:6] == [1.0] * 6
    assert rates[6] == pytest.approx(0.8)
    assert rates[7] == pytest.approx(0.64)
    assert rates[8] == pytest.approx(0.8 ** 3)
    assert learning_rate_for_epoch(TrainingOptions(learning_rate=0.1), 10) == 0.1


def test_readme_tour_config_agrees_with_the_tour_commands():
    """The tour (README "A tour") runs in a working folder: its config's paths are the
    files the tour's earlier steps make there, and its save_path holds the model/best.pt
    the later steps read."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    tour = readme.split("## A tour", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    assert '"$REPO/configs/tour.toml"' in tour and "cd ~/stategrad-tour" in tour
    config = load_toml_config(CONFIGS / "tour.toml")
    files = data_files(config)
    assert f"-o {files.train.as_posix()}" in tour  # written by prepare-tagged
    linked = re.search(r"ln -sf (.*) data/\n", tour).group(1).split()
    assert sorted(Path(p.strip('"')).name for p in linked) == \
        sorted(p.name for p in (files.valid, files.test))
    assert {files.valid.parent.as_posix(), files.test.parent.as_posix()} == {"data"}
    best = (Path(config.output.save_path) / "best.pt").as_posix()
    uses = re.findall(r"--model (\S+)", tour)
    assert uses and set(uses) == {best}
    # every path the tour reads is absolute-by-variable or inside the working folder
    assert not re.search(r"[\s\"](\.\./shared|experiments|src|configs)/", tour)
