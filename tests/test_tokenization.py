"""--tokenization original|plain: how a text becomes tokens, chosen per command, taken
from the model by default (its training configuration; plain for a model from
elsewhere) and recorded in results.  Every expectation is built by hand from the
lines of the text, apart from stategrad's reader."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from stategrad.cli import main
from stategrad.data import Vocabulary, read_tokens
from stategrad.gradients import load_result
from stategrad.legacy import load_config
from stategrad.lm import ConfigError, load_model

LINES = ["the cat sat . the dog ran", "a bird <UNK> . on the mat .", ". the fish slept"]


def run(args):
    return CliRunner().invoke(main, [str(a) for a in args], prog_name="stategrad")


def by_hand(rule: str) -> list[str]:
    """The tokens of LINES: plain is word_language_model's line.split() + ['<eos>'];
    original (in a wikitext path) also ends a sentence at ' . ' and reads <UNK> as <unk>."""
    out: list[str] = []
    for line in LINES:
        if rule == "original":
            line = (" " + line + " ").replace(" . ", " <eos> ").replace("<UNK>", "<unk>")
        out += line.split() + ["<eos>"]
    return out


@pytest.fixture()
def wikitext(tmp_path):
    folder = tmp_path / "wikitext-2"
    folder.mkdir()
    (folder / "valid.txt").write_text("\n".join(LINES) + "\n")
    words = sorted(set(by_hand("plain") + by_hand("original")))
    return folder / "valid.txt", Vocabulary(tuple(words))


def test_the_two_rules_read_what_they_promise(wikitext):
    text, vocab = wikitext
    for rule in ("original", "plain"):
        ids = read_tokens(text, vocab, tokenization=rule)
        assert vocab.decode(ids) == by_hand(rule), rule
    assert by_hand("plain") != by_hand("original")  # the test text tells them apart
    assert vocab.decode(read_tokens(text, vocab)) == by_hand("original")  # the API default
    with pytest.raises(ValueError, match="tokenization"):
        read_tokens(text, vocab, tokenization="spaces")


def test_the_configuration_sets_it_and_checkpoints_remember_it(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text('[data]\npath = "d"\ntokenization = "plain"\n')
    assert load_config(toml).data.tokenization == "plain"
    toml.write_text('[data]\npath = "d"\ntokenization = "words"\n')
    with pytest.raises(ConfigError, match="tokenization"):
        load_config(toml)
    legacy = tmp_path / "c.config"
    legacy.write_text("data_path d\nsave_path s\n")
    assert load_config(legacy).data.tokenization == "original"


class WLM(nn.Module):  # the shape of word_language_model's model
    def __init__(self, ntoken):
        super().__init__()
        self.encoder = nn.Embedding(ntoken, 4)
        self.rnn = nn.LSTM(4, 6, 1)
        self.decoder = nn.Linear(6, ntoken)


@pytest.fixture()
def models(wikitext, tmp_path):
    """The same weights as a stategrad checkpoint trained with each rule, and as a state
    dict from elsewhere with its vocabulary file."""
    from stategrad.lm import RNNLM, ModelSpec, save_checkpoint

    text, vocab = wikitext
    torch.manual_seed(0)
    module = RNNLM(ModelSpec(vocab_size=len(vocab), embedding_size=4, hidden_size=6, cell="lstm"))
    paths = {}
    for rule in ("original", "plain"):
        paths[rule] = tmp_path / f"{rule}.pt"
        save_checkpoint(paths[rule], module, vocab, config={"data": {"tokenization": rule}})
    paths["old"] = tmp_path / "old.pt"  # a checkpoint from before the setting
    save_checkpoint(paths["old"], module, vocab, config={"data": {"path": "d"}})
    wlm = WLM(len(vocab))
    wlm.load_state_dict({"encoder.weight": module.embedding.weight,
                         **{k: v for k, v in module.state_dict().items() if k.startswith("rnn.")},
                         "decoder.weight": module.decoder.weight,
                         "decoder.bias": module.decoder.bias})
    torch.save(wlm.state_dict(), tmp_path / "wlm.pt")
    vocab.save(tmp_path / "vocab.txt")
    return paths, tmp_path / "wlm.pt", tmp_path / "vocab.txt"


def test_models_read_texts_their_own_way_by_default(models):
    paths, wlm, vocab = models
    assert load_model(paths["plain"]).tokenization == "plain"
    assert load_model(paths["original"]).tokenization == "original"
    assert load_model(paths["old"]).tokenization == "original"
    assert load_model(wlm, vocab).tokenization == "plain"


def _gradients(model_args, text, out, *extra):
    r = run(["gradients", *model_args, "--text", text, "--max-delay", 2, "--out", out,
             "--no-progress", "--force", *extra])
    assert r.exit_code == 0, r.output
    return load_result(out).metadata["text"]


def test_gradients_record_the_rule_and_inspect_shows_it(models, wikitext, tmp_path):
    paths, wlm, vocab = models
    text, _ = wikitext
    n = {rule: len(by_hand(rule)) for rule in ("original", "plain")}
    cases = [(["--model", paths["plain"]], (), "plain"),
             (["--model", paths["old"]], (), "original"),
             (["--model", wlm, "--vocab", vocab], (), "plain"),
             (["--model", wlm, "--vocab", vocab], ("--tokenization", "original"), "original"),
             (["--model", paths["plain"]], ("--tokenization", "original"), "original")]
    for i, (model_args, extra, rule) in enumerate(cases):
        meta = _gradients(model_args, text, tmp_path / f"r{i}.h5", *extra)
        assert (meta["tokenization"], meta["tokens"]) == (rule, n[rule]), (model_args, extra)
    r = run(["inspect", tmp_path / "r0.h5"])
    assert r.exit_code == 0 and "tokenization plain" in r.output, r.output
    r = run(["inspect", "--json", tmp_path / "r0.h5"])
    assert json.loads(r.output)["text"]["tokenization"] == "plain"


def _eval(*args):
    r = run(["eval", *args, "--no-progress", "--force"])
    assert r.exit_code == 0, r.output
    return float(r.output.split("perplexity:")[1].split()[0])


def _perplexity_by_hand(wlm_path, vocab_path, rule):
    """Batch 1, 1 step: every token after the first, predicted by the module it was saved
    from, over the tokens of ``rule`` built by hand."""
    words = Vocabulary.load(vocab_path).words
    index = {w: i for i, w in enumerate(words)}
    ids = torch.tensor([index[w] for w in by_hand(rule)])
    model = WLM(len(words))
    model.load_state_dict(torch.load(wlm_path))
    with torch.no_grad():
        out, _ = model.rnn(model.encoder(ids[:-1]).unsqueeze(1))
        logits = model.decoder(out[:, 0]).double()
        return float(torch.exp(nn.functional.cross_entropy(logits, ids[1:])))


def test_eval_reads_a_foreign_model_plainly_unless_told(models, wikitext):
    paths, wlm, vocab = models
    text, _ = wikitext
    plain = _eval("--model", wlm, "--vocab", vocab, "--split", text)
    assert plain == pytest.approx(_perplexity_by_hand(wlm, vocab, "plain"), rel=1e-4)
    original = _eval("--model", wlm, "--vocab", vocab, "--split", text, "--tokenization", "original")
    assert original == pytest.approx(_perplexity_by_hand(wlm, vocab, "original"), rel=1e-4)
    # the checkpoint of the same weights trained with the plain rule reads it so too
    assert _eval("--model", paths["plain"], "--split", text) == pytest.approx(plain, rel=1e-6)
    assert _eval("--model", paths["old"], "--split", text) == pytest.approx(original, rel=1e-6)


def test_embedding_stats_and_export_follow_the_rule(models, wikitext, tmp_path):
    paths, wlm, vocab = models
    text, vocabulary = wikitext
    for rule in ("original", "plain"):
        out = tmp_path / f"{rule}.npz"
        r = run(["embedding-stats", "--model", paths[rule], "--text", text, "--out", out])
        assert r.exit_code == 0, r.output
        assert f"{len(by_hand(rule))} tokens" in r.output
        r = run(["export-embeddings", "--model", wlm, "--vocab", vocab, "--text", text,
                 "--out", tmp_path / "emb", "--force", "--tokenization", rule])
        assert r.exit_code == 0, r.output
        assert np.load(tmp_path / "emb" / "tokens.npy").shape[0] == len(by_hand(rule))
