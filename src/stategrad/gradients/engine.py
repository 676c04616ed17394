"""The state gradient engine: ``G(t, d) = d s_{t+d} / d x_t`` for every t and d < D in one pass.

How it works (see ``docs/engine.md`` for the derivation):

Forward-mode differentiation along the text.  For every start position t still
"in flight" (t > k - D at step k) the engine carries the E tangent columns of
``d state_k / d x_t`` for every layer up to the analysed one.  One step of the
RNN is a linear map on those tangents.  For an LSTM,

    dc' = dpre_i a_i + dpre_f a_f + dpre_g a_g + f * dc,   dh' = dpre_o a_o + tau * dc',
    dpre = dx W_ih^T + dh W_hh^T,

and because every gate coefficient ``a_*`` scales a *column* of ``W^T``, the
coefficients fold into two H x H matrices built once per step (``M_c``, ``M_h``):
the whole step for all D*E tangents is one (D E x H) @ (H x 2H) product plus two
element-wise terms.  That is half the 8 E H^2 flops per Jacobian of the plain
(H x 4H) product.  GRU and tanh/ReLU RNN cells fold the same way.

Finished matrices are gathered over a window of steps and added into their
(delay, class) sums with one batched matrix product, so per-class accumulation
costs a small fraction of the recurrence even for a dozen classes.  Sums are
kept in the compute dtype per chunk of start positions and folded into float64.

The pass is a loop of small named steps over one ``_Pass`` object (everything that
goes from one step to the next, which is also what the running-state file stores):
``_step`` advances every tangent by one position, ``_flush`` adds a finished window
into the sums and closes chunks, ``_save``/``_restore`` write and read the running state.
The step of the cells is one small interface (``tangent_step.py``) with two
implementations: ``fused.py`` (the folds above, ``cells.py``) for PyTorch's LSTM/GRU/RNN
and ``generic.py`` (``torch.func.jvp`` through the model's own step) for any model of the
recurrent protocol (``stategrad.lm.RecurrentLM``).  The accumulation in ``accumulate.py``, the file in
``running_state.py``.
"""


from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from .. import __version__
from ..data import ClassError, ClassSet
from ..lm import RNNLM, LanguageModel, model_hash, needs_generic
from .accumulate import accumulate
from .blocks import BlockSpill
from .coverage import coverage_record, sampling_rule
from .fused import FusedCells
from .generic import GenericCells
from .options import (
    EngineError,
    EngineOptions,
    _sample_mask,
    _text_identity,
    check_options,
    max_rows,
    usable_positions,
)
from .pass_state import _Pass, spill_block
from .progress import _Progress
from .result import GradientResult
from .running_state import RunningStateFile, restore_pass, save_pass
from .running_state import remove_running_state as _remove_running_state
from .tangent_step import TangentStep

# A pair callback receives (step k, start positions of the rows, tangents (A, E, H)
# of the analysed state: row a is d s_k / d x_{starts[a]} transposed).
PairCallback = Callable[[int, np.ndarray, torch.Tensor], None]


def _unwrap(model: LanguageModel | RNNLM | torch.nn.Module) -> tuple[torch.nn.Module, list[str] | None, str]:
    if isinstance(model, LanguageModel):
        return model.module, list(model.vocab.words), model.identity()
    vocab = None
    return model, vocab, model_hash(model)


class StateGradientEngine:
    """One pass over ``tokens`` accumulating state gradients; resumable and sliceable.

    Most users call :func:`compute_state_gradients`.  The class exists so that a run
    can be checkpointed, resumed, and split into slices of start positions.
    """

    def __init__(
        self,
        model: LanguageModel | RNNLM | torch.nn.Module,
        tokens: Sequence[int] | np.ndarray,
        options: EngineOptions,
        classes: ClassSet | None = None,
    ):
        self.module, self.vocab, self.model_identity = _unwrap(model)
        self.tokens = np.ascontiguousarray(np.asarray(tokens, dtype=np.int64))
        if self.tokens.ndim != 1:
            raise EngineError("tokens must be a 1-d sequence of ids")
        self.opts = options
        o = options
        self.device = check_options(o)
        self.cells: TangentStep = _cells_for(self.module, o, self.device)
        self.layer, self.cell = self.cells.layer, self.cells.cell
        V = self.cells.V
        if len(self.tokens) and (self.tokens.min() < 0 or self.tokens.max() >= V):
            raise EngineError(
                f"token ids must lie in 0..{V - 1} (the model's vocabulary); found "
                f"{self.tokens.min()}..{self.tokens.max()}: was the text read with another vocabulary?"
            )
        self.classes = classes if classes is not None else ClassSet.only_all(V)
        if self.classes.vocab_size != V:
            raise EngineError(
                f"classes are defined over {self.classes.vocab_size} words, the model has {V}"
            )
        self.E, self.H = self.cells.E, self.cells.H
        self.C = len(self.classes)
        self.D = o.max_delay
        self.sample_mask = _sample_mask(len(self.tokens), o)
        self._membership = self.classes.membership
        try:  # a token-level class set has rows of its own and belongs to one text
            self._class_keys = np.ascontiguousarray(self.classes.keys_for(self.tokens))
        except ClassError as exc:
            raise EngineError(str(exc)) from exc

    # -- positions and states --------------------------------------------------------------
    def _last_input(self) -> int:
        """One past the last position that takes part (see ``usable_positions``)."""
        return usable_positions(len(self.tokens), self.opts)

    def _max_rows(self) -> int:
        return max_rows(self.sample_mask, self.D)

    def initial_state(self, start: int) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
        """The recurrent state before position ``start``: a cheap no-grad forward pass
        (the fused module) over the tokens before it, or zeros at 0; in segment mode,
        the state carried into ``start``'s segment is what the model computed."""
        return self.states_before([start])[start]

    def states_before(self, starts: Sequence[int], chunk: int | None = None, device=None
                      ) -> dict[int, list[tuple[torch.Tensor, torch.Tensor | None]]]:
        """The recurrent state before each of ``starts`` (per layer (h, c), c None but for
        an LSTM; for a protocol model one (tensor, None) per tensor of its state), from ONE forward pass over the text, ``chunk`` tokens at a time (None:
        all up to a start at once).  On ``device`` (default: the engine's)."""
        device = self.device if device is None else torch.device(device)
        return self.cells.states_before(self.tokens, starts, chunk, device)

    def identity(self) -> dict[str, str]:
        """The model, the text and the class membership this engine works on, as hashes:
        the part of every run fingerprint (running state, parts directory) that names
        the inputs."""
        return {
            "model": self.model_identity,
            "text_sha256": _text_identity(self.tokens, None)["sha256"],
            "class_membership": self.classes.digest(),
        }

    def _fingerprint(self, start: int, stop: int) -> dict[str, Any]:
        """What must agree for a running state to belong to this run: the inputs and
        every option that changes the numbers (including window and chunk size, which
        change the order of additions: resume is bit for bit), and the slice."""
        o = self.opts
        ident = self.identity()
        return {
            "model": ident["model"],
            "text": ident["text_sha256"],
            "options": repr((o.max_delay, o.state, self.layer, o.semantics, o.segment_length,
                             str(o.dtype), o.block_size, o.sample_every, o.sample_fraction,
                             o.seed, o.window, o.chunk_size, len(self.classes),
                             self.classes.names) + ((o.cells,) if o.cells != "auto" else ())),
            "class_membership": ident["class_membership"],
            "slice": (int(start), int(stop)),
        }

    # -- the pass ------------------------------------------------------------------------
    def run(
        self,
        start: int = 0,
        stop: int | None = None,
        *,
        initial_state=None,
        progress: bool | str = True,
        on_pairs: PairCallback | None = None,
        checkpoint_path: str | os.PathLike | None = None,
        checkpoint_every: float = 300.0,
        text_info: dict[str, Any] | None = None,
        stop_after_steps: int | None = None,
        keep_checkpoint: bool = False,
    ) -> GradientResult:
        """Accumulate G(t, d) for start positions ``start <= t < stop`` and every d < D
        (pairs run past ``stop`` up to D - 1 steps, so slices add up to the whole).

        ``progress``: True draws a progress bar, ``"log"`` prints a line to standard error
        every minute instead (runs without a terminal), False is silent.
        ``checkpoint_path``: the running state is saved there every ``checkpoint_every``
        seconds and, if the file exists, the run resumes from it; a damaged one is renamed
        to ``<checkpoint>.damaged`` and the run starts afresh, one of another run is refused.
        ``keep_checkpoint`` leaves the running state in place at the end, for a caller that
        stores the result first and then calls :meth:`remove_running_state`.
        ``stop_after_steps`` ends early (after a checkpoint) -- used to test interruption.
        """
        p = self._new_pass(start, stop, initial_state)
        file = None
        if checkpoint_path is not None:
            file = RunningStateFile(checkpoint_path, self._fingerprint(p.start, p.stop),
                                    (self.D, self.C, self.E, self.H),
                                    {key: buf.shape[-1] for key, buf in p.bufs.items()},
                                    self.cells.state_shapes())
            restore_pass(p, file, self._max_rows())
        bar = _Progress(progress, p.start, p.end, p.k)
        last_save = time.monotonic()
        while p.k < p.end:
            self._step(p, on_pairs)
            bar.update(p.k, p.steps_done)
            if p.slot == max(1, self.opts.window) or p.k == p.end:
                self._flush(p, final=p.k == p.end)
                asked = stop_after_steps is not None and p.steps_done >= stop_after_steps
                if file is not None and p.k < p.end and (
                        time.monotonic() - last_save >= checkpoint_every or asked):
                    save_pass(p, file)
                    last_save = time.monotonic()
                if asked and p.k < p.end:
                    bar.close()
                    raise InterruptedRun(p.k)
        bar.close()
        self._flush(p, final=True)
        if checkpoint_path is not None and not keep_checkpoint:
            self.remove_running_state(checkpoint_path)
        return self._result(p, text_info)

    def _new_pass(self, start: int, stop: int | None, initial_state) -> _Pass:
        """The pass over ``[start, stop)`` before its first step: checked range, zero
        tangents and sums, the state before ``start``."""
        o = self.opts
        last_input = self._last_input()
        stop = last_input if stop is None else min(stop, last_input)
        if not 0 <= start <= stop:
            raise EngineError(f"bad slice [{start}, {stop}) of a text of {last_input} usable positions")
        end = min(stop + self.D - 1, last_input) if stop > start else start  # last step + 1
        if o.semantics == "segment" and stop > start:
            seg = o.segment_length
            end = min(end, ((stop - 1) // seg + 1) * seg)
        D, E, H, C = self.D, self.E, self.H, self.C
        dev, dt = self.device, o.dtype
        A_max = self._max_rows()
        # The analysed state keeps W+1 slots (one per step of the window); others two.
        bufs, chosen = self.cells.buffers(A_max, max(1, o.window), dev, dt)
        state = self.cells.pass_state(
            initial_state if initial_state is not None else self.initial_state(start))
        return _Pass(
            start=start, stop=stop, end=end, k=start,
            hs=[s[0].to(dev, dt).clone() for s in state],
            cs=[s[1].to(dev, dt).clone() if s[1] is not None else None for s in state],
            bufs=bufs, chosen=chosen, cur={key: 0 for key in bufs},
            scratch=None,
            total=torch.zeros(D, C, E * H, dtype=torch.float64, device=dev),
            total_counts=np.zeros((D, C), dtype=np.int64),
            spill=BlockSpill(D, C, H, E) if o.block_size else None,
            chunk=o.block_size or o.chunk_size,
        )

    def _step(self, p: _Pass, on_pairs: PairCallback | None) -> None:
        """Advance every tangent in flight by one position, k -> k + 1.

        Which rows go on: the oldest is dropped if its delay would reach D, all at a
        segment boundary; a row for k is added if k is a start position of this slice."""
        k = p.k
        seg = self.opts.segment_length if self.opts.semantics == "segment" else None
        if seg is not None and k % seg == 0:
            keep = 0
        else:
            keep = len(p.starts)
            if keep and k - p.starts[keep - 1] >= self.D:
                keep -= 1
        inject = p.start <= k < p.stop and (self.sample_mask is None or self.sample_mask[k])
        self.cells.advance(p, keep, inject, self.tokens, max(1, self.opts.window))
        p.starts = np.concatenate([[k], p.starts[:keep]]) if inject else p.starts[:keep]
        p.slot += 1
        p.window_steps.append(k)
        p.window_starts.append(p.starts)
        n_rows = keep + int(inject)
        if on_pairs is not None and n_rows:
            on_pairs(k, p.starts, p.bufs[p.chosen][p.slot][:n_rows])
        p.k += 1
        p.steps_done += 1

    def _flush(self, p: _Pass, final: bool = False) -> None:
        """Add the window's finished matrices into their sums, close the chunks whose
        every pair is done (all starts < the oldest row in flight), start a new window."""
        if p.window_steps:
            accumulate(p.bufs[p.chosen], p.window_steps, p.window_starts, p.accs, p.chunk,
                       self._class_keys, self._membership, self.D, self.C, self.H, self.E)
        oldest_open = math.inf if final else p.starts[-1] if len(p.starts) else p.k
        for b in sorted(p.accs):
            if (b + 1) * p.chunk <= oldest_open:
                acc = p.accs.pop(b)
                p.total.add_(acc.sums.to(torch.float64))
                p.total_counts[...] += acc.counts
                if self.opts.block_size:
                    sums = acc.sums.to(torch.float32).cpu().numpy()
                    p.closed_blocks[b] = (spill_block(p.spill, b, sums), acc.counts)
        # The last step of this window becomes slot 0 of the next.
        if p.slot != 0:
            p.bufs[p.chosen][0].copy_(p.bufs[p.chosen][p.slot])
        p.slot = 0
        p.window_steps.clear()
        p.window_starts.clear()

    # -- the running state -------------------------------------------------------------------
    @classmethod
    def remove_running_state(cls, path) -> None:
        """Delete a running-state file and its block files: only once the result is stored."""
        _remove_running_state(path)

    # -- the result --------------------------------------------------------------------------
    def _result(self, p: _Pass, text_info: dict[str, Any] | None) -> GradientResult:
        o = self.opts
        D, C, E, H = self.D, self.C, self.E, self.H
        sums = p.total.view(D, C, E, H).transpose(2, 3).cpu().numpy()
        block_kwargs: dict[str, Any] = {}
        order = sorted(p.closed_blocks)
        if o.block_size and order:
            block_kwargs = dict(
                block_sums=p.spill.blocks(order),  # on disk, written delay by delay
                block_counts=np.stack([p.closed_blocks[b][1] for b in order]),
                block_starts=np.array([b * o.block_size for b in order], dtype=np.int64),
            )
        text_identity = _text_identity(self.tokens, text_info)
        metadata = {
            "semantics": o.semantics,
            "segment_length": o.segment_length,
            "state": o.state,
            "layer": self.layer,
            "cell": self.cell,
            "max_delay": D,
            "model_identity": self.model_identity,
            "text": text_identity,
            "slice": {"start": int(p.start), "stop": int(p.stop)},
            "coverage": coverage_record(
                text_identity["sha256"], text_identity["tokens"], p.start, p.stop,
                sampling_rule(o.sample_every, o.sample_fraction, o.seed)),
            "class_definitions": self.classes.definitions,
            "class_info": self.classes.info,
            "sampling": {
                "every": o.sample_every,
                "fraction": o.sample_fraction,
                "seed": o.seed if o.sample_fraction is not None else None,
                "starts_used": int(p.total_counts[0, 0]),
            },
            "block_size": o.block_size,
            "dtype": str(o.dtype).replace("torch.", ""),
            "dtype_family": "float",
            "device": str(self.device),
            "stategrad_version": __version__,
            "torch_version": torch.__version__,
            "resumed": p.resumed,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        return GradientResult(sums=sums, counts=p.total_counts, classes=list(self.classes.names),
                              vocab=self.vocab or [], metadata=metadata, **block_kwargs)


def _cells_for(module: torch.nn.Module, o: EngineOptions, device) -> TangentStep:
    """The fused cells for PyTorch's LSTM/GRU/RNN (the fast path), the generic ones for
    everything else (a protocol model, an LSTM with projections, a stack of modules)."""
    if o.cells == "generic" or needs_generic(module):
        if o.cells == "fused":
            raise EngineError(f"the fused cells take a model with one nn.LSTM/GRU/RNN without "
                              f"projections; this is a {type(module).__name__}")
        return GenericCells(module, o.layer, o.state, device, o.dtype)
    module = getattr(module, "fused_model", None) or module
    n = module.rnn.num_layers
    layer = o.layer if o.layer >= 0 else n + o.layer
    if not 0 <= layer < n:
        raise EngineError(f"layer {o.layer} does not exist: the model has layers 0..{n - 1}")
    return FusedCells(module, layer, o.state, device, o.dtype)


class InterruptedRun(RuntimeError):
    """Raised when a run stops early on purpose (``stop_after_steps``); resumable."""

    def __init__(self, position: int):
        super().__init__(f"stopped at position {position}; rerun with the same checkpoint to resume")
        self.position = position


def compute_state_gradients(
    model: LanguageModel | RNNLM | torch.nn.Module,
    tokens: Sequence[int] | np.ndarray,
    *,
    max_delay: int,
    state: str = "cell",
    layer: int = -1,
    classes: ClassSet | None = None,
    semantics: str = "carry",
    segment_length: int | None = None,
    device: str = "cpu",
    dtype: torch.dtype = torch.float32,
    block_size: int | None = None,
    sample_every: int | None = None,
    sample_fraction: float | None = None,
    seed: int = 0,
    cells: str = "auto",
    start: int = 0,
    stop: int | None = None,
    initial_state=None,
    checkpoint_path: str | os.PathLike | None = None,
    checkpoint_every: float = 300.0,
    progress: bool = False,
    on_pairs: PairCallback | None = None,
    text_info: dict[str, Any] | None = None,
) -> GradientResult:
    """Sums and counts of ``G(t, d) = d s_{t+d} / d x_t`` per delay d < ``max_delay`` and class.

    ``semantics="carry"`` differentiates the model run over the whole text (exact);
    ``"segment"`` reproduces the original code: segments of ``segment_length`` tokens
    whose initial state is a constant.  ``layer`` counts from 0 (-1: the top layer).
    ``block_size`` keeps sums per block of that many start positions for confidence
    intervals.  ``sample_every``/``sample_fraction`` use a subset of start positions.
    ``model`` is a stategrad model, a module with an ``rnn`` (nn.LSTM/GRU/RNN, fused
    path; with ``proj_size``, generic path) or ``rnns`` (a list of them), or any model of
    the recurrent protocol (:class:`stategrad.lm.RecurrentLM`); ``state`` then names one
    of its ``state_names``.  ``cells="generic"`` takes the generic path for any of them.
    """
    with torch.no_grad():
        engine = StateGradientEngine(
            model,
            tokens,
            EngineOptions(max_delay=max_delay, state=state, layer=layer, semantics=semantics,
                          segment_length=segment_length, device=device, dtype=dtype,
                          block_size=block_size, sample_every=sample_every,
                          sample_fraction=sample_fraction, seed=seed, cells=cells),
            classes,
        )
        return engine.run(start, stop, initial_state=initial_state, progress=progress,
                          on_pairs=on_pairs, checkpoint_path=checkpoint_path,
                          checkpoint_every=checkpoint_every, text_info=text_info)
