"""Embedding arrays in and out: reading array files and the original's
``save_embedding`` output, the embedding matrix of a model, and exporting a model's
embeddings (per token, per word) in the formats the original's scripts read."""

from __future__ import annotations

import hashlib
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from ..lm import embedding_matrix as lm_embedding_matrix
from ..lm import is_recurrent_lm
from .errors import AnalysisError


def load_npy(path: str | os.PathLike, key: str | None = None) -> np.ndarray:
    """One array from a .npy file (or ``key`` of a .npz), never unpickling; a damaged
    or foreign file is an AnalysisError that names it."""
    try:
        if key is None:
            return np.load(path, allow_pickle=False)
        with np.load(path, allow_pickle=False) as data:
            return data[key]
    # numpy raises these for a truncated, foreign or pickled file
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise AnalysisError(f"{path} is not a readable array file: {exc}") from exc


def file_identity(path: str | os.PathLike) -> dict[str, Any]:
    """Path, size and SHA-256 of a file: enough to tell later which text was used."""
    path = Path(path)
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return {"path": str(path), "bytes": path.stat().st_size, "sha256": digest.hexdigest()}


def embedding_matrix(model: Any) -> np.ndarray:
    """The (V, E) input embedding matrix of a :class:`~stategrad.lm.LanguageModel`
    (or of a bare RNNLM module), as float64."""
    module = getattr(model, "module", model)
    try:
        weight = module.embedding.weight
    except AttributeError:
        if not is_recurrent_lm(module):
            raise AnalysisError(f"{type(model).__name__} has no embedding layer") from None
        weight = lm_embedding_matrix(module)  # a recurrent-protocol model: embed of every id
    return weight.detach().to("cpu").double().numpy()


def read_token_embeddings(path: str | os.PathLike) -> np.ndarray:
    """An N x E array of token embeddings: a ``.npy`` (N x E), a ``.npz`` (``arr_0``),
    or the original's ``save_embedding`` directory (``0.npy``, ``1.npy``, ... one per token)."""
    path = Path(path)
    if path.is_dir():
        files = sorted((f for f in path.glob("*.npy") if f.stem.isdigit()), key=lambda f: int(f.stem))
        if not files:
            raise AnalysisError(f"{path} holds no numbered .npy embedding files")
        return np.stack([load_npy(f) for f in files])
    if not path.is_file():
        raise AnalysisError(f"embedding file not found: {path}")
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as data:
            key = "arr_0" if "arr_0" in data else next(iter(data.keys()))
        return np.asarray(load_npy(path, key))
    return load_npy(path)


def export_token_embeddings(
    model: Any, tokens: np.ndarray, out: str | os.PathLike, *, chunk: int = 65536
) -> tuple[Path, Path]:
    """The original's ``save_embedding`` as one file: ``out`` (.npy, N x E, one row per
    token, the model's dtype) and ``out.dict`` (``word<TAB>row``, the row of each
    word's first occurrence, so ``all_emb[int(row)]`` is that word's embedding as
    the original's analysis scripts read it).  Rows are written in chunks to a
    memory-mapped file, so a long text needs no N x E array in memory."""
    from numpy.lib.format import open_memmap

    out = _npy_path(out)
    weight = _weight(model)
    tokens = np.asarray(tokens)
    array = open_memmap(out, mode="w+", dtype=weight.dtype, shape=(len(tokens), weight.shape[1]))
    for lo in range(0, len(tokens), chunk):
        array[lo : lo + chunk] = weight[tokens[lo : lo + chunk]]
    array.flush()
    del array
    uniq, first = np.unique(tokens, return_index=True)
    dict_path = out.with_name(out.stem + ".dict")
    words = model.vocab.words
    with open(dict_path, "w", encoding="utf-8") as handle:
        for w_id, row in sorted(zip(uniq.tolist(), first.tolist(), strict=True), key=lambda p: p[1]):
            handle.write(f"{words[w_id]}\t{row}\n")
    return out, dict_path


def export_word_embeddings(model: Any, out: str | os.PathLike) -> tuple[Path, Path]:
    """The (V, E) embedding matrix as ``out`` (.npy) and the vocabulary as
    ``out.dict`` (``word<TAB>id``; row i of the matrix is word id i)."""
    out = _npy_path(out)
    np.save(out, _weight(model))
    dict_path = out.with_name(out.stem + ".dict")
    model.vocab.save(dict_path)
    return out, dict_path


def _npy_path(out: str | os.PathLike) -> Path:
    """``out`` with a ``.npy`` suffix (added, never replaced), its folder created."""
    out = Path(out)
    if out.suffix != ".npy":
        out = out.with_name(out.name + ".npy")
    out.parent.mkdir(parents=True, exist_ok=True)
    return out


def _weight(model: Any) -> np.ndarray:
    """The embedding matrix in the model's own dtype (exports keep it)."""
    module = getattr(model, "module", model)
    if not hasattr(module, "embedding") and is_recurrent_lm(module):
        return lm_embedding_matrix(module).to("cpu").numpy()
    return module.embedding.weight.detach().to("cpu").numpy()
