"""Float64 runs of float32-stored models against an independent float64 autograd Jacobian.

Users' models are float32 (a stategrad checkpoint, or a ``word_language_model`` state
dict).  ``--dtype float64`` must then be exact for the float32 values stored: the
reference here reads the weights straight from the file, widens them to float64 and
unrolls torch's own cells (``nn.LSTMCell``/``GRUCell``/``RNNCell``) one step at a time.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from stategrad import ClassSet, Vocabulary, load_model, load_result
from stategrad.cli import main
from stategrad.gradients import compute_state_gradients, sentence_gradients
from stategrad.lm import RNNLM, ModelSpec, save_checkpoint

torch.set_num_threads(1)

V, E, H = 9, 3, 5
WORDS = tuple(f"w{i}" for i in range(V - 1)) + ("<unk>",)
TOL = 1e-12  # relative to the largest reference value


def float32_model(cell: str, layers: int, seed: int = 0) -> RNNLM:
    """A float32 model with every bias non-zero (hidden biases included).

    The values are float64 draws rounded to float32, so that they use every mantissa bit
    at many exponents, as trained weights do: float32 ``uniform_`` draws are multiples of
    2**-24, whose sums float32 holds exactly, and would hide a sum taken in float32."""
    torch.manual_seed(seed)
    spec = ModelSpec(vocab_size=V, embedding_size=E, hidden_size=H, num_layers=layers,
                     cell=cell)
    model = RNNLM(spec).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            scale = 0.5 if "bias" in name else 0.7
            p.copy_(torch.empty(p.shape, dtype=torch.float64).uniform_(-scale, scale))
    assert model.rnn.weight_ih_l0.dtype == torch.float32
    return model


def save_as(model: RNNLM, kind: str, folder) -> tuple:
    """The model written as users have it; returns (path, vocab argument)."""
    if kind == "checkpoint":
        path = folder / "model.pt"
        save_checkpoint(path, model, Vocabulary(WORDS))
        return path, None
    # word_language_model: encoder/rnn/decoder keys, vocabulary in a separate file
    state = {("encoder." + k[len("embedding."):] if k.startswith("embedding.") else k): v
             for k, v in model.state_dict().items()}
    path = folder / "wlm.pt"
    torch.save(state, path)
    vocab = folder / "vocab.txt"
    vocab.write_text("\n".join(WORDS) + "\n")
    return path, vocab


def stored_weights(path) -> dict[str, torch.Tensor]:
    """The file's float32 tensors widened to float64, read without stategrad."""
    payload = torch.load(path, weights_only=True)
    state = payload["state_dict"] if "state_dict" in payload else payload
    out = {k.replace("encoder.", "embedding."): v for k, v in state.items()}
    assert all(v.dtype == torch.float32 for v in out.values())
    return {k: v.double() for k, v in out.items()}


def float64_cells(w: dict[str, torch.Tensor], cell: str, layers: int) -> list[nn.Module]:
    make = {"lstm": lambda i: nn.LSTMCell(i, H), "gru": lambda i: nn.GRUCell(i, H),
            "rnn_tanh": lambda i: nn.RNNCell(i, H, nonlinearity="tanh"),
            "rnn_relu": lambda i: nn.RNNCell(i, H, nonlinearity="relu")}[cell]
    cells = []
    for layer in range(layers):
        c = make(E if layer == 0 else H).double()
        with torch.no_grad():
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(c, name).copy_(w[f"rnn.{name}_l{layer}"])
        cells.append(c)
    return cells


def reference_jacobian(path, cell: str, layers: int, tokens, layer: int, component: str,
                       segment: int | None = None) -> np.ndarray:
    """J[k, :, t, :] = d s_k / d x_t (T, H, T, E), from the zero state; with ``segment``
    the state's values carry over segment boundaries but its gradient does not."""
    w = stored_weights(path)
    cells = float64_cells(w, cell, layers)
    x0 = w["embedding.weight"][torch.as_tensor(tokens)]

    def states(x: torch.Tensor) -> torch.Tensor:
        zero = torch.zeros(1, H, dtype=torch.float64)
        st = [(zero, zero) if cell == "lstm" else zero for _ in range(layers)]
        out = []
        for k in range(x.shape[0]):
            if segment is not None and k % segment == 0:
                st = [tuple(s.detach() for s in z) if cell == "lstm" else z.detach() for z in st]
            inp = x[k : k + 1]
            for i, c in enumerate(cells):
                st[i] = c(inp, st[i])
                inp = st[i][0] if cell == "lstm" else st[i]
            s = st[layer]
            out.append((s[1] if component == "cell" else s[0])[0] if cell == "lstm" else s[0])
        return torch.stack(out)

    return torch.autograd.functional.jacobian(states, x0, vectorize=True).numpy()


def direct_sums(J, tokens, membership, D, segment=None, usable=None):
    """Per (delay, class) sums of the Jacobian blocks, by plain loops."""
    T = len(tokens) if usable is None else usable
    sums = np.zeros((D, membership.shape[1], H, E))
    counts = np.zeros((D, membership.shape[1]), dtype=np.int64)
    for t in range(T):
        for d in range(min(D, T - t)):
            if segment is not None and (t + d) // segment != t // segment:
                break
            m = membership[tokens[t]]
            sums[d, m] += J[t + d, :, t, :]
            counts[d, m] += 1
    return sums, counts


def classes() -> ClassSet:
    member = np.random.default_rng(1).random((V, 3)) < 0.5
    member[:, 0] = True
    return ClassSet(["all", "a", "b"], member)


def relative_error(ours, ref) -> float:
    return float(np.abs(ours - ref).max() / np.abs(ref).max())


CASES = [("lstm", 1), ("lstm", 2), ("gru", 1), ("gru", 2), ("rnn_tanh", 1), ("rnn_tanh", 2),
         ("rnn_relu", 1), ("rnn_relu", 2)]


def analysable(cell: str, layers: int):
    comps = ("cell", "hidden") if cell == "lstm" else ("hidden",)
    return [(layer, comp) for layer in range(layers) for comp in comps]


@pytest.mark.parametrize("kind", ["checkpoint", "state_dict"])
@pytest.mark.parametrize("cell,layers", CASES)
def test_float64_run_of_a_float32_model_is_exact(tmp_path, cell, layers, kind):
    path, vocab = save_as(float32_model(cell, layers), kind, tmp_path)
    # a bare state dict does not record an RNN's nonlinearity: it is given, as users must
    lm = load_model(path, vocab, cell=cell if kind == "state_dict" else None)
    assert lm.module.rnn.weight_ih_l0.dtype == torch.float32  # as users have it
    tokens = np.random.default_rng(3).integers(0, V, size=16)
    cs, D = classes(), 5
    for layer, comp in analysable(cell, layers):
        J = reference_jacobian(path, cell, layers, tokens, layer, comp)
        # every pair (t, k) of the text
        G = sentence_gradients(lm, tokens, state=comp, layer=layer, dtype=torch.float64)
        ref_pairs = np.transpose(J, (2, 0, 1, 3))  # [t, k] = d s_k / d x_t
        err = relative_error(G, ref_pairs)
        assert err < TOL, f"{kind} layer {layer} {comp}: pairs off by {err:.1e}"
        # per-class sums against a direct sum of the Jacobian's blocks
        ref, ref_counts = direct_sums(J, tokens, cs.membership, D)
        res = compute_state_gradients(lm, tokens, max_delay=D, state=comp, layer=layer,
                                      classes=cs, dtype=torch.float64)
        np.testing.assert_array_equal(res.counts, ref_counts)
        err = relative_error(res.sums, ref)
        assert err < TOL, f"{kind} layer {layer} {comp}: sums off by {err:.1e}"


@pytest.mark.parametrize("cell,state", [("lstm", "cell"), ("gru", "hidden"),
                                        ("rnn_tanh", "hidden")])
def test_segment_semantics_of_a_float32_model_is_exact(tmp_path, cell, state):
    path, _ = save_as(float32_model(cell, 2, seed=1), "checkpoint", tmp_path)
    lm = load_model(path)
    tokens = np.random.default_rng(5).integers(0, V, size=22)
    seg, D, cs = 5, 4, classes()
    usable = (len(tokens) // seg - 1) * seg
    for layer in range(2):
        J = reference_jacobian(path, cell, 2, tokens, layer, state, segment=seg)
        ref, ref_counts = direct_sums(J, tokens, cs.membership, D, seg, usable)
        res = compute_state_gradients(lm, tokens, max_delay=D, state=state, layer=layer,
                                      classes=cs, semantics="segment", segment_length=seg,
                                      dtype=torch.float64)
        np.testing.assert_array_equal(res.counts, ref_counts)
        assert relative_error(res.sums, ref) < TOL


@pytest.mark.parametrize("kind", ["checkpoint", "state_dict"])
def test_a_float64_model_is_loaded_as_float64(tmp_path, kind):
    model = float32_model("gru", 2).double()
    with torch.no_grad():  # values that float32 cannot hold
        for p in model.parameters():
            p.add_(1e-12)
    path, vocab = save_as(model, kind, tmp_path)
    lm = load_model(path, vocab)
    for name, value in model.state_dict().items():
        loaded = lm.module.state_dict()[name.replace("encoder.", "embedding.")]
        assert loaded.dtype == torch.float64 and torch.equal(loaded, value), name


def test_slices_merged_on_the_command_line_equal_one_run(tmp_path):
    """Slices start from the state the fused module computes; the whole run carries
    the engine's own state: both must use the same float64 weights."""
    path, _ = save_as(float32_model("gru", 2, seed=2), "checkpoint", tmp_path)
    text = tmp_path / "text.txt"
    rng = np.random.default_rng(6)
    text.write_text("\n".join(" ".join(WORDS[i] for i in rng.integers(0, V - 1, size=12))
                              for _ in range(8)) + "\n")
    common = ["gradients", "--model", path, "--text", text, "--max-delay", 6, "--dtype",
              "float64", "--state", "hidden", "--no-progress"]

    def run(*args):
        r = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
        assert r.exit_code == 0, r.output

    run(*common, "--out", tmp_path / "whole.h5")
    cuts = [0, 17, 18, 55, None]
    parts = []
    for i, (a, b) in enumerate(zip(cuts[:-1], cuts[1:], strict=True)):
        parts.append(tmp_path / f"part{i}.h5")
        run(*common, "--start", a, *(["--stop", b] if b is not None else []), "--out", parts[-1])
    run("merge", *parts, "--out", tmp_path / "merged.h5")
    whole, merged = load_result(tmp_path / "whole.h5"), load_result(tmp_path / "merged.h5")
    np.testing.assert_array_equal(merged.counts, whole.counts)
    assert relative_error(merged.sums, whole.sums) < TOL
    assert whole.counts[0, 0] > 90  # the whole text, not a trivially short one
