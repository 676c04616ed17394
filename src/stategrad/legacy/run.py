"""``stategrad run``: the original's ``main.py --config F`` (train, validate, test,
save the embedding table, compute gradients) on top of :mod:`stategrad.lm` and
:mod:`stategrad.gradients`."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..atomic import write_atomic
from ..data import read_tokens, unk_warning
from ..gradients import compute_state_gradients
from ..lm import (
    LAST,
    ConfigError,
    LanguageModel,
    TrainingError,
    TrainingSummary,
    checkpoint_for,
    data_files,
    evaluate,
    load_trained,
    require_file,
    resolve_device,
    train,
)
from .config import LegacyRun


def save_embedding_table(model: LanguageModel, target: str | os.PathLike) -> tuple[Path, Path]:
    """The original's ``save_embedding``: the whole (V, E) embedding table, row i the
    word with id i, saved once without reading any text (its ``run_epoch.py`` evaluates
    ``Model/get_output/embedding:0``, ``np.save``s it and stops).  Statistics of this
    file weight every vocabulary word once (type weighting, as the papers).

    ``target`` is named as ``np.save`` names it (``.npy`` added when missing); an
    existing folder, or a name ending in ``/`` (the original README's wording), gets
    ``all.npy``.  ``TARGET.dict`` lists ``word<TAB>id``, the words of the rows.
    """
    raw = str(target)
    target = Path(target)
    if target.is_dir() or raw.endswith(("/", "\\")):
        array_path = target / "all.npy"
    else:
        array_path = target if target.suffix == ".npy" else target.with_name(target.name + ".npy")
    dict_path = Path(raw.rstrip("/\\") + ".dict")
    array_path.parent.mkdir(parents=True, exist_ok=True)
    table = model.module.embedding.weight.detach().cpu().numpy()
    # never a half-written table under the final name
    write_atomic(array_path, lambda tmp: np.save(tmp, table), suffix=".tmp.npy")
    model.vocab.save(dict_path)
    return array_path, dict_path


@dataclass
class LegacyResult:
    summary: TrainingSummary | None = None
    valid_ppl: float | None = None
    test_ppl: float | None = None
    embeddings: tuple[Path, Path] | None = None
    gradients: Path | None = None


def _legacy_gradient_options(run: LegacyRun) -> dict[str, Any]:
    g = run.gradients or {}
    missing = [k for k in ("grad_interm", "max_delay", "grad_dir") if k not in g]
    if missing:
        raise ConfigError(f"{run.source}: gradient options need grad_interm, max_delay and "
                          f"grad_dir (missing: {', '.join(missing)}); or use `stategrad gradients`")
    if g["grad_interm"] not in ("cell", "hidden"):
        raise ConfigError(f"{run.source}: grad_interm {g['grad_interm']!r}: choose cell or hidden")
    if isinstance(g["max_delay"], bool) or not isinstance(g["max_delay"], int) or g["max_delay"] < 1:
        raise ConfigError(f"{run.source}: max_delay {g['max_delay']!r}: expected a positive integer")
    return g


def run_legacy(
    run: LegacyRun,
    *,
    do_train: bool = True,
    do_valid: bool = True,
    do_test: bool = True,
    device: str | None = None,
    threads: int | None = None,
    progress: bool | str = True,
    echo: Callable[[str], None] | None = None,
) -> LegacyResult:
    """``main.py --config F [--notrain] [--novalid] [--notest]`` of the original.

    - training always comes with validation (the original refuses otherwise);
    - an existing ``save_path/last.pt`` is continued, as the original's TensorFlow
      Supervisor restored the latest checkpoint of ``save_path``;
    - ``--notrain`` uses the latest saved model (``last.pt``);
    - validation on its own uses the training batch size and ``num_steps``; test mode
      uses batch size 1 and 1 step, on ``other_test`` or (``valid_as_test``) the
      validation text;
    - ``save_embedding`` writes the embedding table (V x E) and stops before the test,
      as the original's ``run_epoch.py`` did;
    - ``grad_interm``/``max_delay``/``grad_dir`` (with ``--notrain``) compute the state
      gradients on the validation text with the original's segment semantics, for
      every time step at once, into ``grad_dir/state_gradients.h5``.
    """
    say = echo or (lambda message: None)
    config = run.config
    if do_train and not do_valid:
        raise ConfigError("training and validation are always combined (as in the original): "
                          "drop --novalid, or add --notrain")
    for note in run.notes:
        say(f"note: {note}")
    if run.gradients and do_train:
        raise ConfigError(f"{run.source} has gradient options ({', '.join(run.gradients)}): "
                          "train with the configuration without them, then compute gradients "
                          "with --notrain --notest (or `stategrad gradients`)")
    dev = resolve_device(device or config.training.device)
    result = LegacyResult()
    if do_train:
        result.summary = _train(config, dev, threads, progress, say)
        if result.summary.interrupted:
            return result
    elif threads:
        torch.set_num_threads(threads)
    need_model = (do_valid and not do_train) or do_test
    if not need_model:
        return result
    model = load_trained(_saved_model(config), dev)
    files = data_files(config)
    opts = {"no_eos": config.data.no_eos, "encoding": config.data.encoding,
            "tokenization": config.data.tokenization}
    if run.gradients and do_valid and not do_train:
        valid = read_tokens(require_file(files.valid, "valid"), model.vocab, **opts)
        result.gradients = _valid_gradients(run, model, valid, files.valid, dev, progress, say)
    elif do_valid and not do_train:
        valid = read_tokens(require_file(files.valid, "valid"), model.vocab, **opts)
        result.valid_ppl = evaluate(model, valid, batch_size=config.training.batch_size,
                                    num_steps=config.training.num_steps, device=dev,
                                    progress=progress is True)
    if do_test and run.save_embedding is not None:
        result.embeddings = save_embedding_table(model, run.save_embedding)
        say(f"embedding table ({len(model.vocab)} words) written to {result.embeddings[0]}, "
            f"its words to {result.embeddings[1]}; no test, as in the original")
        return result
    if do_test:
        result.test_ppl = _test(run, model, files, opts, dev, progress, say)
    return result


def _saved_model(config) -> Path:
    """save_path/last.pt (or best.pt) for --notrain; run itself trains, so without one the
    way out is to drop --notrain."""
    try:
        return checkpoint_for(config, "last")
    except TrainingError:
        raise TrainingError(f"no trained model in {config.output.save_path} yet (expected "
                            f"{LAST}): run without --notrain to train it first") from None


def _train(config, dev, threads, progress, say) -> TrainingSummary:
    # an existing last.pt is continued, as the original's Supervisor restored save_path
    resume = (Path(config.output.save_path) / LAST).exists()
    if resume:
        say(f"continuing from {Path(config.output.save_path) / LAST}")
    return train(config, resume=resume, device=str(dev), threads=threads, progress=progress,
                 echo=say)


def _valid_gradients(run: LegacyRun, model: LanguageModel, valid, valid_path, dev, progress,
                     say) -> Path:
    """grad_interm/max_delay/grad_dir: the state gradients of the validation text, with the
    original's segment semantics, every time step at once."""
    g = _legacy_gradient_options(run)
    num_steps = run.config.training.num_steps
    say(f"state gradients of the {g['grad_interm']} state on {valid_path}: delays "
        f"0..{g['max_delay'] - 1}, segments of {num_steps} tokens (the original's "
        "semantics), all time steps in one pass"
        + (f"; time_step {g['time_step']} is not needed" if "time_step" in g else ""))
    gradients = compute_state_gradients(
        model, valid, max_delay=g["max_delay"], state=g["grad_interm"],
        semantics="segment", segment_length=num_steps, device=str(dev), progress=progress)
    path = gradients.save(Path(str(g["grad_dir"])) / "state_gradients.h5")
    say(f"state gradients written to {path}")
    return path


def _test(run: LegacyRun, model: LanguageModel, files, opts, dev, progress, say) -> float:
    """The original's test mode: batch size 1, 1 step, on other_test, the validation text
    (valid_as_test) or the test text."""
    if run.other_test is not None:
        test_file = Path(run.other_test)
    elif run.valid_as_test:
        test_file = files.valid
    else:
        test_file = files.test
    test_file = require_file(test_file, "test")
    tokens = read_tokens(test_file, model.vocab, **opts)
    warning = unk_warning(tokens, model.vocab)
    if warning:
        say(warning)
    # the perplexity itself is the caller's to print (stategrad run: once, on stdout)
    say(f"test mode (batch size 1, 1 step) on {test_file}")
    return evaluate(model, tokens, batch_size=1, num_steps=1, device=dev, progress=progress is True)


__all__ = ["LegacyResult", "run_legacy", "save_embedding_table"]
