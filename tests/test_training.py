"""Training loop, evaluation, checkpoints and resume, NaN handling, the legacy command line."""

from __future__ import annotations

import csv
import json
import math
import random
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

from stategrad.cli import main as cli
from stategrad.data import Vocabulary
from stategrad.legacy import legacy_to_run, run_legacy
from stategrad.lm import (
    RNNLM,
    ConfigError,
    EarlyStopping,
    EpochProgress,
    LogUniformSampler,
    ModelSpec,
    NonFiniteLossError,
    TrainingError,
    evaluate,
    learning_rate,
    load_trained,
    sampled_softmax_cost,
    train,
    train_epoch,
    validate_config,
)
from stategrad.lm.loop import _rows_tensor

torch.set_num_threads(1)

NOUNS_SG = ["cat", "dog", "bird", "child", "teacher", "farmer", "horse", "king"]
NOUNS_PL = ["cats", "dogs", "birds", "children", "teachers", "farmers", "horses", "kings"]
VERBS_SG = ["sees", "likes", "chases", "finds", "hears", "helps"]
VERBS_PL = ["see", "like", "chase", "find", "hear", "help"]
ADJ = ["big", "small", "old", "young", "red", "happy"]
PLACES = ["park", "house", "garden", "river", "town"]


def sentence(rng: random.Random) -> str:
    """A small agreement grammar: subject-verb number agreement, optional adjectives/PPs."""
    plural = rng.random() < 0.5
    subj = rng.choice(NOUNS_PL if plural else NOUNS_SG)
    verb = rng.choice(VERBS_PL if plural else VERBS_SG)
    det = "the" if plural else rng.choice(["the", "a"])
    words = [det] + ([rng.choice(ADJ)] if rng.random() < 0.4 else []) + [subj, verb]
    obj_plural = rng.random() < 0.5
    words += ["the", rng.choice(NOUNS_PL if obj_plural else NOUNS_SG)]
    if rng.random() < 0.3:
        words += ["in", "the", rng.choice(PLACES)]
    return " ".join(words)


def write_corpus(folder: Path, seed: int = 0, n_train: int = 900, n_eval: int = 150) -> Path:
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for name, n in (("train", n_train), ("valid", n_eval), ("test", n_eval)):
        (folder / f"{name}.txt").write_text("\n".join(sentence(rng) for _ in range(n)) + "\n")
    return folder


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return write_corpus(tmp_path_factory.mktemp("corpus"))


def tiny_config(corpus: Path, save: Path, **training):
    options = {"batch_size": 8, "num_steps": 10, "max_max_epoch": 2, "max_epoch": 1,
               "lr_decay": 0.7, "learning_rate": 1.0, "max_grad_norm": 5.0, "seed": 3}
    options.update(training)
    return validate_config({
        "data": {"path": str(corpus)},
        "model": {"hidden_size": 24, "embedding_size": 12, "dropout": 0.2, "init_scale": 0.1},
        "training": options,
        "output": {"save_path": str(save)},
    })


def batches_per_epoch(corpus: Path, batch_size: int = 8, num_steps: int = 10) -> int:
    lines = [line for line in (corpus / "train.txt").read_text().splitlines() if line]
    tokens = sum(len(line.split()) + 1 for line in lines)
    return (tokens // batch_size) // num_steps - 1


def params_of(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["state_dict"]


# --- unit pieces ---------------------------------------------------------------------------

def test_learning_rate_schedule_from_config(corpus, tmp_path):
    c = tiny_config(corpus, tmp_path, learning_rate=2.0, lr_decay=0.5, max_epoch=2)
    assert [learning_rate(c, i) for i in range(4)] == [2.0, 2.0, 1.0, 0.5]


def test_early_stopping_follows_the_original():
    # patience 2: from epoch index 2 on, compare with the previous two perplexities
    es = EarlyStopping(2)
    assert not es.update(0, 100.0)
    assert not es.update(1, 90.0)
    assert not es.update(2, 80.0)  # better than both: no failure
    assert es.failures == 0 and es.previous == [90.0, 80.0]
    assert not es.update(3, 85.0)  # worse than 80 only: one failure
    assert es.failures == 1
    assert es.update(4, 85.0)  # >= 80 and >= 85: two more, total 3 >= 2
    # failures are never reset by an improvement
    es = EarlyStopping(3)
    for i, ppl in enumerate([50, 40, 30, 35, 20, 10]):
        stop = es.update(i, float(ppl))
    assert es.failures == 1 and not stop
    assert EarlyStopping.from_state(es.state()) == es


def test_early_stopping_before_patience_never_counts():
    es = EarlyStopping(3)
    assert not es.update(0, 10.0)
    assert not es.update(1, 20.0)
    assert not es.update(2, 30.0)
    assert es.failures == 0
    assert es.update(3, 40.0)  # worse than all three previous


def test_evaluate_matches_stepwise_computation():
    torch.manual_seed(0)
    module = RNNLM(ModelSpec(vocab_size=17, embedding_size=5, hidden_size=7, dropout=0.3))
    tokens = np.random.default_rng(0).integers(0, 17, size=123).astype(np.int32)
    # test mode: batch 1, one step at a time, state carried: every token after the first
    module.eval()
    state, total = None, 0.0
    with torch.no_grad():
        for i in range(len(tokens) - 1):
            logits, state = module(torch.tensor([[tokens[i]]]), state)
            total += F.cross_entropy(logits[0].double(), torch.tensor([int(tokens[i + 1])])).item()
    expected = math.exp(total / (len(tokens) - 1))
    assert evaluate(module, tokens, batch_size=1, num_steps=1, chunk=16) == pytest.approx(expected, rel=1e-5)
    # batches: every position of every row after its first, each row run on its own from a
    # zero state, whatever num_steps (the last partial window of a row is scored too)
    for batch_size in (3, 10):
        rows = tokens[: len(tokens) // batch_size * batch_size].reshape(batch_size, -1)
        total = 0.0
        with torch.no_grad():
            for row in rows:
                logits, _ = module(torch.tensor(row[:-1].astype(np.int64)).unsqueeze(1))
                total += F.cross_entropy(logits[:, 0].double(), torch.tensor(row[1:].astype(np.int64)),
                                         reduction="sum").item()
        expected = math.exp(total / rows[:, 1:].size)
        for num_steps in (4, 5, 35):
            assert evaluate(module, tokens, batch_size=batch_size, num_steps=num_steps) == \
                pytest.approx(expected, rel=1e-5), (batch_size, num_steps)
    assert module.training is False


def test_sampled_softmax_matches_direct_formula():
    torch.manual_seed(0)
    V, H, N = 50, 6, 9
    decoder = torch.nn.Linear(H, V)
    hidden = torch.randn(N, H)
    targets = torch.randint(0, V, (N,))
    sampler = LogUniformSampler(V, 8)
    torch.manual_seed(5)
    cost = sampled_softmax_cost(hidden, targets, decoder, sampler)
    torch.manual_seed(5)
    ids, tries = sampler.sample()
    assert len(set(ids.tolist())) == 8 and tries >= 8 and int(ids.max()) < V
    # direct: p(k) = log((k+2)/(k+1))/log(V+1), Q = 1-(1-p)^tries, accidental hits removed
    p = lambda k: math.log((k + 2) / (k + 1)) / math.log(V + 1)  # noqa: E731
    q = lambda k: 1 - (1 - p(k)) ** tries  # noqa: E731
    W, b = decoder.weight.detach().double(), decoder.bias.detach().double()
    h = hidden.double()
    expected = 0.0
    for n in range(N):
        y = int(targets[n])
        logits = [float(h[n] @ W[y] + b[y]) - math.log(q(y))]
        for k in ids.tolist():
            if k != y:
                logits.append(float(h[n] @ W[k] + b[k]) - math.log(q(k)))
        expected += -logits[0] + math.log(sum(math.exp(v) for v in logits))
    assert cost.item() == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ConfigError, match="num_sampled"):
        LogUniformSampler(10, 10)


def test_log_uniform_sampler_prefers_frequent_ids():
    torch.manual_seed(0)
    sampler = LogUniformSampler(1000, 20)
    counts = np.zeros(1000)
    expected = np.zeros(1000)
    for _ in range(400):
        ids, tries = sampler.sample()
        counts[ids.numpy()] += 1
        expected += sampler.log_expected_count(torch.arange(1000), tries).exp().numpy()
    assert counts[:10].sum() > counts[500:].sum()
    # inclusion frequencies follow the expected counts used for the logit correction
    for k in (0, 1, 5, 50):
        assert abs(counts[k] - expected[k]) / 400 < 0.08, (k, counts[k], expected[k])


def test_train_epoch_detects_nan_before_stepping():
    torch.manual_seed(0)
    module = RNNLM(ModelSpec(vocab_size=11, embedding_size=4, hidden_size=5))
    data = _rows_tensor(np.arange(200, dtype=np.int32) % 11, 2, torch.device("cpu"))
    opt = torch.optim.SGD(module.parameters(), lr=1.0)
    with torch.no_grad():
        module.decoder.bias[3] = float("nan")
    before = {k: v.clone() for k, v in module.state_dict().items()}
    with pytest.raises(NonFiniteLossError, match="nan"):
        train_epoch(module, data, opt, num_steps=5, max_grad_norm=None, epoch=0)
    for k, v in module.state_dict().items():
        assert torch.equal(v, before[k], ) or torch.isnan(v).any(), k  # untouched


def test_train_epoch_can_stop_and_continue_exactly():
    data_np = (np.arange(400, dtype=np.int32) * 7) % 13

    def run(split: int | None):
        torch.manual_seed(1)
        module = RNNLM(ModelSpec(vocab_size=13, embedding_size=4, hidden_size=6, dropout=0.3))
        opt = torch.optim.Adam(module.parameters(), lr=0.01)
        data = _rows_tensor(data_np, 4, torch.device("cpu"))
        prog = train_epoch(module, data, opt, num_steps=5, max_grad_norm=1.0, max_batches=split)
        if split is not None:
            assert prog.next_batch == split
            prog = train_epoch(module, data, opt, num_steps=5, max_grad_norm=1.0, progress=prog)
        return prog, module

    whole, m1 = run(None)
    parts, m2 = run(7)
    assert whole.cost == parts.cost and whole.steps == parts.steps == 19 * 5
    for (k, a), b in zip(m1.state_dict().items(), m2.state_dict().values(), strict=True):
        assert torch.equal(a, b), k


# --- whole runs ----------------------------------------------------------------------------

def test_end_to_end_training_learns(corpus, tmp_path):
    config = tiny_config(corpus, tmp_path / "run", max_max_epoch=3, max_epoch=2)
    summary = train(config, progress=False)
    vocab_size = len(Vocabulary.load(tmp_path / "run" / "vocab.txt"))
    assert 40 <= vocab_size <= 60
    ppls = [m.valid_ppl for m in summary.history]
    assert len(ppls) == 3 and summary.epochs_completed == 3
    # a uniform guess scores vocab_size; the grammar allows far less
    assert ppls[-1] < vocab_size / 4, ppls
    assert ppls[-1] < ppls[0]
    assert [m.learning_rate for m in summary.history] == pytest.approx([1.0, 1.0, 0.7])
    out = tmp_path / "run"
    for name in ("last.pt", "best.pt", "metrics.csv", "metrics.json", "train.log"):
        assert (out / name).is_file(), name
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert float(rows[-1]["valid_ppl"]) == pytest.approx(ppls[-1])
    assert json.loads((out / "metrics.json").read_text())[0]["train_ppl"] > 0
    assert "valid perplexity" in (out / "train.log").read_text()
    assert summary.best_valid_ppl == min(ppls)
    best = load_trained(out / "best.pt")
    assert evaluate(best, np.asarray(best.vocab.encode((corpus / "valid.txt").read_text().split())),
                    batch_size=8, num_steps=10) > 1.0


def test_checkpoint_round_trip_weights_only(corpus, tmp_path):
    config = tiny_config(corpus, tmp_path / "run", max_max_epoch=1, optimizer="adam",
                         learning_rate=0.01)
    train(config, progress=False)
    payload = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    tr = payload["training"]
    assert tr["epoch"] == 1 and tr["batch"] == 0
    assert tr["rng"]["torch"].dtype == torch.uint8
    assert tr["optimizer"]["state"]  # Adam moments are there
    assert tr["history"][0]["epoch"] == 1
    assert payload["config"]["training"]["optimizer"] == "adam"
    model = load_trained(tmp_path / "run" / "last.pt")
    assert model.vocab.words == tuple(payload["vocab"])
    for k, v in model.module.state_dict().items():
        assert torch.equal(v, payload["state_dict"][k])


@pytest.mark.parametrize("options", [
    {"optimizer": "sgd"},
    {"optimizer": "adam", "learning_rate": 0.01, "softmax": "sampled", "num_sampled": 8},
    {"optimizer": "adagrad", "learning_rate": 0.1, "max_grad_norm": None},
])
def test_resume_after_epoch_is_identical(corpus, tmp_path, options):
    straight = train(tiny_config(corpus, tmp_path / "a", **options), progress=False)
    first = train(tiny_config(corpus, tmp_path / "b", max_max_epoch=1, **options), progress=False)
    assert first.epochs_completed == 1
    resumed = train(tiny_config(corpus, tmp_path / "b", **options), resume=True, progress=False)
    assert [m.train_ppl for m in resumed.history] == [m.train_ppl for m in straight.history]
    assert [m.valid_ppl for m in resumed.history] == [m.valid_ppl for m in straight.history]
    a, b = params_of(tmp_path / "a" / "last.pt"), params_of(tmp_path / "b" / "last.pt")
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_resume_mid_epoch_is_identical(corpus, tmp_path):
    straight = train(tiny_config(corpus, tmp_path / "a"), progress=False)
    calls = {"n": 0}
    per_epoch = batches_per_epoch(corpus)

    def stop_after_5() -> bool:
        calls["n"] += 1
        # polled after every batch and once at the end of each epoch
        return calls["n"] == per_epoch + 1 + 5  # after batch 5 of epoch 2

    cut = train(tiny_config(corpus, tmp_path / "b"), progress=False, should_stop=stop_after_5)
    assert cut.interrupted and cut.epochs_completed == 1
    tr = torch.load(tmp_path / "b" / "last.pt", weights_only=True)["training"]
    assert tr["epoch"] == 1 and tr["batch"] == 5 and len(tr["recurrent_state"]) == 2
    resumed = train(tiny_config(corpus, tmp_path / "b"), resume=True, progress=False)
    assert not resumed.interrupted
    assert [m.valid_ppl for m in resumed.history] == [m.valid_ppl for m in straight.history]
    assert [m.train_ppl for m in resumed.history] == [m.train_ppl for m in straight.history]
    a, b = params_of(tmp_path / "a" / "last.pt"), params_of(tmp_path / "b" / "last.pt")
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_existing_run_needs_resume_or_overwrite(corpus, tmp_path):
    config = tiny_config(corpus, tmp_path / "run", max_max_epoch=1)
    train(config, progress=False)
    with pytest.raises(TrainingError, match="--resume"):
        train(config, progress=False)
    assert train(config, overwrite=True, progress=False).epochs_completed == 1


def test_resume_with_changed_vocabulary_is_refused(corpus, tmp_path):
    config = tiny_config(corpus, tmp_path / "run", max_max_epoch=1)
    train(config, progress=False)
    other = write_corpus(tmp_path / "other", seed=1)
    (other / "train.txt").write_text((other / "train.txt").read_text() + "zebra unicorn\n")
    changed = tiny_config(other, tmp_path / "run", max_max_epoch=2)
    with pytest.raises(TrainingError, match="vocabulary differs"):
        train(changed, resume=True, progress=False)
    bigger = validate_config({**changed.to_dict(), "data": {"path": str(corpus)},
                              "model": {**changed.to_dict()["model"], "hidden_size": 30}})
    with pytest.raises(TrainingError, match="hidden_size: 24 in the checkpoint, 30 now"):
        train(bigger, resume=True, progress=False)


def test_too_short_valid_file_fails_before_training(corpus, tmp_path):
    short = tmp_path / "short"
    short.mkdir()
    (short / "train.txt").write_text((corpus / "train.txt").read_text())
    (short / "valid.txt").write_text("the cat sees the dog\n")
    with pytest.raises(ConfigError, match="valid file .* too few"):
        train(tiny_config(short, tmp_path / "run"), progress=False)
    assert not (tmp_path / "run" / "last.pt").exists()


def test_missing_data_file_is_named(tmp_path):
    config = tiny_config(tmp_path / "nowhere", tmp_path / "run")
    with pytest.raises(ConfigError, match="train file not found: .*nowhere"):
        train(config, progress=False)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(corpus, tmp_path, monkeypatch):
    config = tiny_config(corpus, tmp_path / "run")
    import stategrad.lm.loop as loop

    real = loop.F.cross_entropy
    calls = {"n": 0}
    per_epoch = batches_per_epoch(corpus)

    def poisoned(*args, **kwargs):
        calls["n"] += 1
        value = real(*args, **kwargs)
        # epoch 1: its training batches + one validation chunk; poison from epoch 2 batch 3
        return value * float("nan") if calls["n"] >= per_epoch + 1 + 3 else value

    monkeypatch.setattr(loop.F, "cross_entropy", poisoned)
    with pytest.raises(TrainingError) as info:
        train(config, progress=False)
    message = str(info.value)
    assert "nan" in message and "epoch 2, batch 3" in message
    assert "learning_rate" in message and "max_grad_norm" in message and "last.pt" in message
    payload = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert payload["training"]["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in payload["state_dict"].values())


def test_early_stopping_run_stops_and_does_not_save_the_stopping_epoch(corpus, tmp_path,
                                                                       monkeypatch):
    import stategrad.lm.training as training

    scripted = iter([10.0, 9.0, 9.5, 9.7, 5.0, 4.0])
    monkeypatch.setattr(training, "evaluate", lambda *a, **k: next(scripted))
    config = tiny_config(corpus, tmp_path / "run", max_max_epoch=6, early_stop=2)
    summary = train(config, progress=False)
    # epoch index 2: 9.5 >= 9 (one failure); index 3: 9.7 >= 9 and >= 9.5 (three) -> stop
    assert summary.stopped_early
    assert [m.valid_ppl for m in summary.history] == [10.0, 9.0, 9.5, 9.7]
    assert summary.best_valid_ppl == 9.0 and summary.best_epoch == 2
    saved = torch.load(tmp_path / "run" / "last.pt", weights_only=True)["training"]
    assert saved["epoch"] == 3  # the stopping epoch (4) was not written, as in the original
    assert saved["early_stopping"]["failures"] == 1
    best = torch.load(tmp_path / "run" / "best.pt", weights_only=True)["training"]
    assert best["epoch"] == 2


# --- the original's command line -----------------------------------------------------------

def legacy_config(corpus: Path, save: Path, extra: str = "") -> str:
    return (f"save_path {save}/\nlog_dir {save}/logs\ndata_path {corpus}\nvocab_size 10000\n"
            "vocab False\nbasic_cell LSTM\nnum_layers 1\nembedding_size 12\nsize ` 24\n"
            "num_steps 10\ninit_scale 0.1\nlearning_rate 1\nmax_grad_norm 5\nbatch_size 8\n"
            "forget_bias 0\ndropout 0.8\nmax_epoch 1\nmax_max_epoch 1\nlr_decay 0.8\n"
            "optimizer sgd\ntrainer trainer\nsoftmax full\nno_emb_dropout True\n" + extra)


def test_run_command_train_test_and_embeddings(corpus, tmp_path):
    cfg = tmp_path / "base.config"
    cfg.write_text(legacy_config(corpus, tmp_path / "m"))
    runner = CliRunner()
    result = runner.invoke(cli, ["run", "--config", str(cfg), "--device", "cpu", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "Test Perplexity:" in result.output
    assert (tmp_path / "m" / "logs" / "m.log").is_file()
    # the original's embedding dump: --notrain --novalid with save_embedding writes the
    # V x E table (row i = word id i) and its words, and stops before the test
    emb = tmp_path / "base_emb.config"
    emb.write_text(legacy_config(corpus, tmp_path / "m",
                                 f"other_test {corpus}/valid.txt\nsave_embedding {tmp_path}/emb\n"))
    result = runner.invoke(cli, ["run", "--config", str(emb), "--notrain", "--novalid",
                                 "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "Test Perplexity:" not in result.output
    array = np.load(tmp_path / "emb.npy")
    model = load_trained(tmp_path / "m" / "last.pt")
    assert np.array_equal(array, model.module.embedding.weight.detach().numpy())
    lines = (tmp_path / "emb.dict").read_text().splitlines()
    assert lines == [f"{w}\t{i}" for i, w in enumerate(model.vocab.words)]


def test_run_requires_validation_and_routes_gradient_keys(corpus, tmp_path):
    run = legacy_to_run({"save_path": str(tmp_path / "m"), "data_path": str(corpus)})
    with pytest.raises(ConfigError, match="always combined"):
        run_legacy(run, do_train=True, do_valid=False, progress=False)
    grad = legacy_to_run({"save_path": str(tmp_path / "m"), "data_path": str(corpus),
                          "grad_interm": "cell", "max_delay": 3, "time_step": 0,
                          "grad_dir": str(tmp_path / "g")})
    with pytest.raises(ConfigError, match="--notrain"):
        run_legacy(grad, progress=False)


def test_run_legacy_valid_only_uses_training_shape(corpus, tmp_path):
    cfg = tmp_path / "base.config"
    cfg.write_text(legacy_config(corpus, tmp_path / "m"))
    run = legacy_to_run({"save_path": str(tmp_path / "m"), "data_path": str(corpus),
                         "embedding_size": 12, "size": 24, "num_steps": 10, "batch_size": 8,
                         "max_max_epoch": 1, "init_scale": 0.1, "valid_as_test": True})
    trained = run_legacy(run, progress=False)
    assert trained.summary.epochs_completed == 1
    again = run_legacy(run, do_train=False, progress=False)
    # validation alone: training batch size and steps, the same number train() reported
    assert again.valid_ppl == pytest.approx(trained.summary.history[-1].valid_ppl, rel=1e-6)
    # valid_as_test: the validation text in test mode (batch 1, 1 step) scores more tokens
    assert again.test_ppl is not None and again.test_ppl != again.valid_ppl


def test_train_and_eval_commands(corpus, tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text(f"""
[data]
path = "{corpus}"
[model]
hidden_size = 16
embedding_size = 8
[training]
batch_size = 8
num_steps = 10
[output]
save_path = "{tmp_path / 'out'}"
""")
    runner = CliRunner()
    result = runner.invoke(cli, ["train", str(toml), "--no-progress", "--threads", "1"])
    assert result.exit_code == 0, result.output
    assert "best valid perplexity" in result.output
    again = runner.invoke(cli, ["train", str(toml), "--no-progress"])
    assert again.exit_code != 0 and "--resume" in again.output
    result = runner.invoke(cli, ["eval", str(toml), "--split", "valid", "--no-progress"])
    assert result.exit_code == 0, result.output
    valid_ppl = float(result.output.split("perplexity:")[1].split()[0])
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert valid_ppl == pytest.approx(metrics[-1]["valid_ppl"], abs=1e-3)
    result = runner.invoke(cli, ["eval", "--model", str(tmp_path / "out" / "best.pt"),
                                 "--split", str(corpus / "test.txt"), "--no-progress"])
    assert result.exit_code == 0, result.output
    by_path = float(result.output.split("perplexity:")[1].split()[0])
    result = runner.invoke(cli, ["eval", "--model", str(tmp_path / "out" / "best.pt"),
                                 "--no-progress"])
    assert result.exit_code == 0, result.output
    assert float(result.output.split("perplexity:")[1].split()[0]) == pytest.approx(by_path)
    bad = tmp_path / "bad.toml"
    bad.write_text("[model]\nhiden_size = 3\n")
    result = runner.invoke(cli, ["train", str(bad)])
    assert result.exit_code != 0 and "did you mean 'hidden_size'" in result.output


def test_pretrained_embeddings_are_loaded_and_can_be_fixed(corpus, tmp_path, monkeypatch):
    embeddings = pytest.importorskip("stategrad.data")
    calls = {}

    def fake(path, vocab):
        calls["path"] = path
        return torch.arange(len(vocab) * 12, dtype=torch.float32).reshape(len(vocab), 12) / 1000

    monkeypatch.setattr(embeddings, "load_embedding_matrix", fake)
    config = validate_config({**tiny_config(corpus, tmp_path / "run", max_max_epoch=1).to_dict(),
                              "model": {"hidden_size": 24, "embedding_size": 12,
                                        "pretrained_embeddings": "emb.npy",
                                        "fixed_embeddings": True}})
    train(config, progress=False)
    weight = params_of(tmp_path / "run" / "last.pt")["embedding.weight"]
    assert calls["path"] == "emb.npy"
    assert torch.equal(weight, torch.arange(weight.numel(), dtype=torch.float32).reshape(weight.shape) / 1000)


def test_epoch_progress_perplexity():
    prog = EpochProgress(cost=20.0, steps=10)
    assert prog.perplexity == pytest.approx(math.exp(2.0))


def test_run_legacy_gradient_keys_use_the_engine_with_segment_semantics(corpus, tmp_path):
    pytest.importorskip("stategrad.gradients")
    from stategrad.gradients import load_result

    base = {"save_path": str(tmp_path / "m"), "data_path": str(corpus), "embedding_size": 6,
            "size": 8, "num_steps": 10, "batch_size": 8, "max_max_epoch": 1}
    run_legacy(legacy_to_run(base), do_test=False, progress=False)
    grad = legacy_to_run({**base, "grad_interm": "cell", "time_step": 0, "max_delay": 4,
                          "grad_dir": str(tmp_path / "g")})
    out = run_legacy(grad, do_train=False, do_test=False, progress=False)
    result = load_result(out.gradients)
    assert result.sums.shape == (4, 1, 8, 6)
    assert result.metadata["semantics"] == "segment"
    # inside segments of 10 tokens, delay d has 10 - d (start, end) pairs per segment
    valid_tokens = sum(len(line.split()) + 1 for line in
                       (corpus / "valid.txt").read_text().splitlines() if line)
    assert valid_tokens - 2 * 10 <= result.counts[0, 0] <= valid_tokens
    # pairs (t, t + 3) stay inside one segment for 7 of every 10 starts
    assert result.counts[3, 0] / result.counts[0, 0] == pytest.approx(0.7, abs=0.01)


def test_train_command_keeps_every_epoch_on_request(corpus, tmp_path):
    toml = tmp_path / "tiny.toml"
    toml.write_text(
        f'[data]\npath = "{corpus}"\n[model]\nhidden_size = 16\nembedding_size = 8\n'
        f'[training]\nbatch_size = 8\nnum_steps = 10\nmax_max_epoch = 2\n'
        f'[output]\nsave_path = "{tmp_path / "m"}"\n')
    result = CliRunner().invoke(cli, ["train", str(toml), "--keep-epochs", "--no-progress"])
    assert result.exit_code == 0, result.output
    for epoch in (1, 2):
        assert (tmp_path / "m" / f"epoch_{epoch}.pt").is_file()
    assert not params_of(tmp_path / "m" / "epoch_1.pt")["rnn.weight_hh_l0"].equal(
        params_of(tmp_path / "m" / "epoch_2.pt")["rnn.weight_hh_l0"])


def test_log_progress_writes_lines_within_an_epoch(corpus, tmp_path, monkeypatch):
    import stategrad.lm.loop as loop

    monkeypatch.setattr(loop, "LINE_PROGRESS_SECONDS", 0.0)
    messages: list[str] = []
    config = tiny_config(corpus, tmp_path / "out", max_max_epoch=1)
    train(config, progress="log", echo=messages.append)
    n = batches_per_epoch(corpus)
    lines = [m for m in messages if m.startswith("epoch 1/1: batch")]
    # one line per batch at interval 0, counting up to the last batch, with ppl and speed
    assert len(lines) == n
    assert lines[-1].startswith(f"epoch 1/1: batch {n:,} of {n:,} (ppl ")
    assert "tok/s" in lines[0]
    quiet: list[str] = []
    train(tiny_config(corpus, tmp_path / "quiet", max_max_epoch=1), progress=False,
          echo=quiet.append)
    assert not [m for m in quiet if ": batch" in m]
