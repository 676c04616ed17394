"""Model files: the stategrad checkpoint, checked on reading, and the models of
PyTorch's ``word_language_model`` (state dicts and, when trusted, pickled modules).

Checkpoint format (version 1), a plain dict that ``torch.load(path,
weights_only=True)`` opens::

    {"format": "stategrad-checkpoint", "version": 1,
     "spec": {...ModelSpec fields...},
     "state_dict": {...RNNLM.state_dict()...},
     "vocab": [word0, word1, ...],          # id order
     "config": {...the full training configuration...},
     "training": {...epoch, step, metrics, optimizer and RNG state...}}
"""

from __future__ import annotations

import dataclasses
import os
import sys
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..atomic import torch_save_atomic
from ..data import Vocabulary
from .models import RNNLM, LanguageModel, ModelError, ModelSpec, build_module, normalise_cell

CHECKPOINT_FORMAT = "stategrad-checkpoint"
CHECKPOINT_VERSION = 1


def save_checkpoint(
    path: str | os.PathLike,
    module: RNNLM,
    vocab: Vocabulary,
    config: dict[str, Any] | None = None,
    training: dict[str, Any] | None = None,
) -> None:
    """Write atomically (temp file + rename) so a crash never leaves half a checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "spec": module.spec.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in module.state_dict().items()},
        "vocab": list(vocab.words),
        "config": config or {},
        "training": training or {},
    }
    try:
        torch_save_atomic(payload, path)
    except OSError as exc:
        raise ModelError(f"could not write checkpoint {path}: {exc}") from exc


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """The checkpoint's payload, checked: format, version, spec, vocabulary, and every
    weight's name and shape against the spec.  Problems raise one-line ModelErrors."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"checkpoint not found: {path}")
    payload = _load_file(path, trusted=False)
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ModelError(f"{path} is not a stategrad checkpoint")
    check_checkpoint(payload, path)
    return payload


def check_checkpoint(payload: dict[str, Any], source: str | os.PathLike) -> ModelSpec:
    """Validate a checkpoint payload's structure; returns its spec."""
    if payload.get("version") != CHECKPOINT_VERSION:
        raise ModelError(
            f"{source} has checkpoint version {payload.get('version')!r}; this stategrad reads "
            f"version {CHECKPOINT_VERSION}"
        )
    for key, kind, required in (("spec", dict, True), ("state_dict", dict, True),
                                ("vocab", list, True), ("config", dict, False),
                                ("training", dict, False)):
        if key not in payload and required:
            raise ModelError(f"{source} is damaged: the checkpoint has no {key!r}")
        value = payload.get(key)
        if not isinstance(value, kind) and (required or value is not None):
            raise ModelError(f"{source} is damaged: the checkpoint's {key!r} is a "
                             f"{type(value).__name__}, not a {kind.__name__}")
    spec = _spec_from_checkpoint(payload["spec"], source)
    vocab = payload["vocab"]
    if not all(isinstance(w, str) for w in vocab):
        raise ModelError(f"{source} is damaged: its vocabulary holds entries that are not words")
    if len(set(vocab)) != len(vocab):
        raise ModelError(f"{source} is damaged: its vocabulary repeats words")
    if len(vocab) != spec.vocab_size:
        raise ModelError(f"{source} is damaged: its vocabulary has {len(vocab)} words but "
                         f"the spec says vocab_size={spec.vocab_size}")
    _check_state_dict(payload["state_dict"], spec, source)
    return spec


# ModelSpec fields and the Python types a checkpoint may hold for them.
_SPEC_TYPES: dict[str, tuple[type, ...]] = {
    "vocab_size": (int,), "embedding_size": (int,), "hidden_size": (int,), "num_layers": (int,),
    "cell": (str,), "dropout": (int, float), "embedding_dropout": (bool,),
    "init_scale": (int, float), "forget_bias": (int, float), "tie_weights": (bool,),
    "d_state": (int,), "d_conv": (int,), "expand": (int,),
}


def _spec_from_checkpoint(data: dict[str, Any], source: str | os.PathLike) -> ModelSpec:
    required = [f.name for f in dataclasses.fields(ModelSpec)
                if f.default is dataclasses.MISSING]
    missing = [name for name in required if name not in data]
    if missing:
        raise ModelError(f"{source} is damaged: its spec lacks {', '.join(missing)}")
    for name, value in data.items():
        kinds = _SPEC_TYPES.get(name)
        # bool is an int to Python, but never a valid size
        if kinds is not None and (not isinstance(value, kinds)
                                  or (isinstance(value, bool) and bool not in kinds)):
            raise ModelError(f"{source} is damaged: its spec's {name} is {value!r}")
    try:
        return ModelSpec.from_dict(data)
    except ModelError as exc:
        raise ModelError(f"{source} is damaged: {exc}") from None


def _check_state_dict(state: dict[str, Any], spec: ModelSpec, source: str | os.PathLike) -> None:
    """Every weight the spec's model has, with its shape, and nothing else."""
    with torch.device("meta"):  # shapes only: no memory, no initialisation cost
        expected = {k: tuple(v.shape) for k, v in build_module(spec).state_dict().items()}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        what = [f"missing {missing[:4]}"] if missing else []
        what += [f"unexpected {unexpected[:4]}"] if unexpected else []
        raise ModelError(f"{source} is damaged: its weights do not fit its spec "
                         f"({'; '.join(what)})")
    for name, shape in expected.items():
        value = state[name]
        if not isinstance(value, torch.Tensor) or not value.is_floating_point():
            raise ModelError(f"{source} is damaged: weight {name} is not a float tensor")
        if tuple(value.shape) != shape:
            raise ModelError(f"{source} is damaged: weight {name} has shape "
                             f"{tuple(value.shape)}, the spec gives {shape}")
        if not torch.isfinite(value).all():
            # training never saves a diverged model; gradients of one would be all NaN
            raise ModelError(f"{source} is damaged: weight {name} holds NaN or infinite values")


def _state_dtype(state: dict[str, torch.Tensor]) -> torch.dtype:
    """float64 when any weight is float64 (kept exactly), float32 otherwise (half and
    bfloat16 weights are widened exactly)."""
    floats = [v.dtype for v in state.values() if isinstance(v, torch.Tensor) and v.is_floating_point()]
    return torch.float64 if torch.float64 in floats else torch.float32


def module_from_checkpoint(payload: dict[str, Any]) -> tuple[RNNLM, Vocabulary]:
    """The model of a payload from :func:`read_checkpoint`, in its stored precision."""
    spec = ModelSpec.from_dict(payload["spec"])
    module = build_module(spec).to(_state_dtype(payload["state_dict"]))
    module.load_state_dict(payload["state_dict"])
    vocab = Vocabulary(tuple(payload["vocab"]))
    if len(vocab) != spec.vocab_size:
        raise ModelError(
            f"checkpoint vocabulary has {len(vocab)} words but the model {spec.vocab_size}"
        )
    return module, vocab


def _load_file(path: Path, trusted: bool, code_path: str | os.PathLike | None = None) -> Any:
    """``torch.load`` with the safe loader, or, when the file holds pickled objects and
    ``trusted``, the full one, with ``code_path`` (the folder of the modules that define
    the pickled classes) importable while it runs.  Any failure is one line naming the
    file."""
    try:
        with open(path, "rb") as f:
            head = f.read(2)
    except OSError as exc:
        raise ModelError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        with warnings.catch_warnings():  # its protocol warning asks users to file issues
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several unrelated types (OSError too) for bad files
        if not _holds_pickled_objects(head, exc):
            raise ModelError(f"{path} is truncated or corrupt: not a readable PyTorch file "
                             f"({_load_detail(exc)})") from None
        if not trusted:
            raise ModelError(
                f"{path} holds pickled Python objects (a whole pickled module?): loading it "
                "runs code from the file; pass trusted=True / --trusted if you trust it"
            ) from None
    added = str(Path(code_path).resolve()) if code_path is not None else None
    if added is not None:
        if not Path(added).is_dir():
            raise ModelError(f"code path not found: {code_path} (--code-path)")
        sys.path.insert(0, added)
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except ModuleNotFoundError as exc:
        where = f"it is not in --code-path {code_path}" if added else "give --code-path DIR"
        raise ModelError(
            f"{path} is a pickled module whose class is defined in module {exc.name!r}, which "
            f"cannot be imported: {where}, the folder holding {exc.name}.py (code_path= in "
            "load_model)"
        ) from None
    except Exception as exc:  # noqa: BLE001 - unpickling can raise anything
        raise ModelError(f"{path} could not be unpickled ({_load_detail(exc)})") from None
    finally:
        if added is not None and added in sys.path:
            sys.path.remove(added)


def _holds_pickled_objects(head: bytes, exc: Exception) -> bool:
    """Whether the safe loader refused well-formed pickled objects (as opposed to a
    truncated or corrupt file): a refused global in a PyTorch file, or a plain pickle
    stream (``head``: a protocol 2..5 header) that the safe loader does not read."""
    for err in (exc, exc.__context__, exc.__cause__):
        if err is not None and "Unsupported global" in str(err):
            return True
    return len(head) == 2 and head[0] == 0x80 and 2 <= head[1] <= 5 and "operand" in str(exc.__context__)


def _load_detail(exc: BaseException) -> str:
    """A short cause for a load failure: torch's messages run over many lines and ask
    for bug reports, so keep the first sentence of the innermost useful error."""
    inner = exc.__context__ if "Weights only load failed" in str(exc) and exc.__context__ else exc
    text = str(inner).strip().splitlines()[0] if str(inner).strip() else ""
    if isinstance(inner, EOFError):
        return "the file ends too early"
    if isinstance(inner, (KeyError, IndexError)) or not text:
        return f"unrecognised content, {type(inner).__name__}"
    return text.split(". ")[0].rstrip(".")[:160]


# --- models from elsewhere ----------------------------------------------------------------

def _spec_from_foreign_state(state: dict[str, torch.Tensor], cell: str | None) -> ModelSpec:
    """Infer the shape of a ``word_language_model``-style state dict."""
    try:
        emb = state["encoder.weight"]
        dec = state["decoder.weight"]
    except KeyError:
        raise ModelError(
            "not a word_language_model state dict: expected keys 'encoder.weight', "
            f"'rnn.weight_ih_l0', 'decoder.weight'; found {sorted(state)[:8]}"
        ) from None
    layers = sum(1 for k in state if k.startswith("rnn.weight_ih_l"))
    if layers == 0:
        raise ModelError("state dict has no 'rnn.weight_ih_l*' keys (a Transformer model?)")
    gate_rows = state["rnn.weight_ih_l0"].shape[0]
    hidden = state["rnn.weight_hh_l0"].shape[1]
    ratio = gate_rows // hidden
    inferred = {4: "lstm", 3: "gru", 1: "rnn"}.get(ratio)
    if inferred is None:
        raise ModelError(f"cannot tell the cell type from weight_ih_l0 of shape {tuple(state['rnn.weight_ih_l0'].shape)}")
    if inferred == "rnn" and cell is None:
        # tanh and ReLU RNNs have the same weights: reading one as the other is silently wrong
        raise ModelError("an nn.RNN state dict does not record its nonlinearity: give "
                         "--nonlinearity tanh or relu (nonlinearity= in load_model)")
    if cell is not None:
        cell = normalise_cell(cell)
        if {"lstm": 4, "gru": 3}.get(cell, 1) != ratio and cell.startswith("rnn_"):
            raise ModelError(f"--nonlinearity is for nn.RNN models; these weights are an "
                             f"{inferred.upper()}'s")
        if {"lstm": 4, "gru": 3}.get(cell, 1) != ratio:
            raise ModelError(f"cell {cell!r} does not match weights shaped for {inferred!r}")
    else:
        cell = inferred
    return ModelSpec(
        vocab_size=emb.shape[0], embedding_size=emb.shape[1], hidden_size=hidden,
        num_layers=layers, cell=cell, tie_weights=dec.data_ptr() == emb.data_ptr(),
    )


def _module_from_foreign_state(state: dict[str, torch.Tensor], cell: str | None) -> RNNLM:
    spec = _spec_from_foreign_state(state, cell)
    spec = dataclasses.replace(spec, tie_weights=False)
    dtype = _state_dtype(state)
    module = RNNLM(spec).to(dtype)  # a float64 model stays float64
    mapped = {}
    for key, value in state.items():
        if key.startswith("encoder."):
            mapped["embedding." + key[len("encoder."):]] = value
        elif key.startswith(("rnn.", "decoder.")):
            mapped[key] = value
    if "decoder.bias" not in mapped:
        mapped["decoder.bias"] = torch.zeros(spec.vocab_size, dtype=dtype)
    try:
        missing, unexpected = module.load_state_dict(mapped, strict=False)
    except RuntimeError as exc:  # shapes that do not fit; torch's message is many lines
        raise ModelError(f"state dict does not fit: {_load_detail(exc)}") from None
    if missing or unexpected:
        raise ModelError(f"state dict does not fit: missing {missing}, unexpected {unexpected}")
    return module


def load_model(
    path: str | os.PathLike,
    vocab: str | os.PathLike | Vocabulary | None = None,
    *,
    trusted: bool = False,
    cell: str | None = None,
    nonlinearity: str | None = None,
    code_path: str | os.PathLike | None = None,
) -> LanguageModel:
    """Open a model for analysis.

    - a stategrad checkpoint (vocabulary inside);
    - a ``word_language_model`` state dict (``torch.save(model.state_dict())``), with
      ``vocab`` a ``word<TAB>id`` file or one word per line in id order; an ``nn.RNN``
      state dict also needs ``nonlinearity`` ('tanh' or 'relu'): its weights do not say;
    - the whole pickled module that example saves (``torch.save(model)``) -- only with
      ``trusted=True``, because unpickling runs code from the file, and ``vocab``;
      ``code_path`` is the folder of the module defining its class (the example's
      ``model.py``) when that is not importable.
    """
    path = Path(path)
    if nonlinearity not in (None, "tanh", "relu"):
        raise ModelError(f"nonlinearity must be 'tanh' or 'relu', not {nonlinearity!r}")
    if not path.is_file():
        raise ModelError(f"model file not found: {path}")
    payload = _load_file(path, trusted, code_path)
    what = "a bare state dict"

    if isinstance(payload, dict) and payload.get("format") == CHECKPOINT_FORMAT:
        check_checkpoint(payload, path)
        module, ckpt_vocab = module_from_checkpoint(payload)
        module.eval()
        return LanguageModel(module, ckpt_vocab, str(path), payload.get("config") or {})

    if isinstance(payload, nn.Module):
        rnn = getattr(payload, "rnn", None)
        if not isinstance(rnn, (nn.LSTM, nn.GRU, nn.RNN)):
            raise ModelError(f"{path}: the pickled module has no 'rnn' LSTM/GRU/RNN submodule")
        if rnn.bidirectional:
            raise ModelError(f"{path}: bidirectional RNNs are not language models; not supported")
        state = payload.state_dict()
        if isinstance(rnn, nn.RNN):
            if nonlinearity is not None and nonlinearity != rnn.nonlinearity:
                raise ModelError(f"{path}: the pickled module's RNN uses {rnn.nonlinearity}, "
                                 f"not --nonlinearity {nonlinearity}")
            cell = "rnn_relu" if rnn.nonlinearity == "relu" else "rnn_tanh"
        elif nonlinearity is not None:
            raise ModelError(f"{path}: --nonlinearity is for nn.RNN models; this one is an "
                             f"{type(rnn).__name__}")
        payload = state
        what = "a pickled module, which holds no vocabulary"
    elif nonlinearity is not None:
        cell = "rnn_relu" if nonlinearity == "relu" else "rnn_tanh"

    if isinstance(payload, dict) and all(isinstance(v, torch.Tensor) for v in payload.values()):
        if vocab is None:
            raise ModelError(f"{path} is {what}: give its vocabulary file too (--vocab)")
        vocabulary = vocab if isinstance(vocab, Vocabulary) else Vocabulary.load(vocab)
        module = _module_from_foreign_state(payload, cell)
        if len(vocabulary) != module.spec.vocab_size:
            raise ModelError(
                f"vocabulary has {len(vocabulary)} words but the model's embedding has "
                f"{module.spec.vocab_size} rows"
            )
        module.eval()
        return LanguageModel(module, vocabulary, str(path), foreign=True)
    raise ModelError(f"{path}: unrecognised model file content ({type(payload).__name__})")
