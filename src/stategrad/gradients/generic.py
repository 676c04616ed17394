"""The generic path: tangents of any model of the recurrent protocol (``stategrad.lm``).

For every start position in flight the pass carries the E tangent columns of
``d state_k / d x_t`` for the model's WHOLE state (all its tensors, flattened to S
numbers).  One step pushes all of them through the model's own ``step`` at once:
``torch.func.jvp`` of the step, vmapped over the rows*E tangents, with the state
tangents in and an input tangent that is zero except for the new row's identity
(``d s_{k+1} / d x_k``).  The analysed part is taken from the new tangents with the
model's ``select`` (a linear map, so the same function applies to tangents).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.func import jvp, vmap

from ..lm import adapt, flatten_state, unflatten_state
from .options import EngineError
from .pass_state import Key, _Pass

FULL: Key = (-1, "state")  # the tangents of the whole state


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return (lines[0] if lines else type(exc).__name__)[:200]


class GenericCells:
    """The tangent step of a protocol model (or a module :func:`stategrad.lm.adapt` takes)."""

    def __init__(self, module: torch.nn.Module, layer: int, state: str, device, dtype):
        try:
            model = adapt(module)
        except ValueError as exc:
            raise EngineError(str(exc)) from exc
        # A copy, so that the user's module keeps its device and dtype; every parameter is
        # cast before any arithmetic, so a float64 run of a float32 model is exact.
        self.model = copy.deepcopy(model).to(device, dtype).eval().requires_grad_(False)
        n = int(model.num_layers)
        self.layer = layer if layer >= 0 else n + layer
        if not 0 <= self.layer < n:
            raise EngineError(f"layer {layer} does not exist: the model has layers 0..{n - 1}")
        names = tuple(model.state_names)
        if state not in names:
            raise EngineError(f"state {state!r} (--state) is not one of this model's states: "
                              f"{', '.join(names)}")
        self.state = state
        self.cell = str(getattr(model, "cell_name", type(model).__name__))
        self.device, self.dtype = torch.device(device), dtype
        with torch.no_grad():
            init = self.model.initial_state(1, self.device, dtype)
            leaves, self.structure = flatten_state(init)
            if any(leaf.ndim < 1 or leaf.shape[0] != 1 for leaf in leaves):
                raise EngineError("initial_state(1, ...) must give tensors with a leading "
                                  "batch dimension of 1")
            self.shapes = [tuple(leaf.shape[1:]) for leaf in leaves]
            self.sizes = [int(np.prod(s, dtype=np.int64)) for s in self.shapes]
            self.S = sum(self.sizes)
            try:
                picked = self.model.select(init, state, self.layer)
            except (KeyError, IndexError, ValueError) as exc:
                raise EngineError(f"select(state, {state!r}, {self.layer}) failed: "
                                  f"{_first_line(exc)}") from exc
            if picked.ndim != 2 or picked.shape[0] != 1:
                raise EngineError(f"select must give (batch, size), got shape {tuple(picked.shape)}")
            self.H = int(picked.shape[1])
            self.V = int(model.vocab_size)
            self.E = int(self.model.embed(torch.zeros(1, dtype=torch.long, device=self.device)
                                          ).shape[-1])

    # -- the pass's buffers and states ---------------------------------------------------
    def buffers(self, rows: int, window: int, device, dtype) -> tuple[dict[Key, torch.Tensor], Key]:
        chosen = (self.layer, self.state)
        return {FULL: torch.zeros(2, rows, self.E, self.S, device=device, dtype=dtype),
                chosen: torch.zeros(window + 1, rows, self.E, self.H, device=device,
                                    dtype=dtype)}, chosen

    def state_shapes(self):
        return [(s, None) for s in self.shapes]

    def _pairs(self, state) -> list[tuple[torch.Tensor, None]]:
        leaves, _ = flatten_state(state)
        return [(leaf[0], None) for leaf in leaves]

    def pass_state(self, state: Any):
        """The pass's form of ``state``: the model's own state (batch 1), or the list of
        (tensor, None) pairs that :meth:`states_before` gives."""
        if isinstance(state, list) and all(isinstance(s, tuple) and len(s) == 2 and s[1] is None
                                           for s in state):
            pairs = state
        else:
            pairs = self._pairs(state)
        if [tuple(h.shape) for h, _ in pairs] != self.shapes:
            raise EngineError("the initial state does not fit this model's state")
        return pairs

    def _model_state(self, hs: Sequence[torch.Tensor]):
        return unflatten_state([h.unsqueeze(0) for h in hs], self.structure)

    def states_before(self, tokens: np.ndarray, starts: Sequence[int], chunk: int | None,
                      device) -> dict:
        out = {}
        with torch.no_grad():
            state = self.model.initial_state(1, self.device, self.dtype)
            pos = 0
            for target in sorted(set(int(s) for s in starts)):
                while pos < target:  # the protocol has only a step: one token at a time
                    hi = min(target, pos + 1024)
                    xs = self.model.embed(torch.as_tensor(tokens[pos:hi], device=self.device))
                    for x in xs:
                        state = self.model.step(x.unsqueeze(0), state)
                    pos = hi
                out[target] = [(h.to(device).clone(), c) for h, c in self._pairs(state)]
        return out

    # -- one step ------------------------------------------------------------------------
    def _embedded(self, p: _Pass, tokens: np.ndarray, pos: int) -> torch.Tensor:
        base = pos - pos % 1024
        if base not in p.x_proj:
            p.x_proj.clear()
            ids = torch.as_tensor(tokens[base : base + 1024], device=self.device)
            p.x_proj[base] = self.model.embed(ids)
        return p.x_proj[base][pos - base : pos - base + 1]

    def _split(self, flat: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(N, S) tangents as the state's tensors, each (N, 1, *shape)."""
        return tuple(part.reshape(flat.shape[0], 1, *shape)
                     for part, shape in zip(flat.split(self.sizes, dim=1), self.shapes, strict=True))

    def _output(self, out):
        return tuple(flatten_state(out)[0]), self.model.select(out, self.state, self.layer)

    def _push(self, fn, primal, tangents):
        """jvp of ``fn`` at ``primal``, vmapped over the leading dim of ``tangents``:
        (the new state's tensors, (their tangents, the analysed part's tangents))."""
        try:
            (new_leaves, _), tangent = vmap(lambda t: jvp(fn, (primal,), (t,)),
                                            out_dims=(None, 0))(tangents)
        except (RuntimeError, NotImplementedError) as exc:
            raise EngineError("the model's step could not run under torch.func.jvp and vmap "
                              f"({_first_line(exc)}); see the recurrent protocol's rules") from exc
        return new_leaves, tangent

    def advance(self, p: _Pass, keep: int, inject: bool, tokens: np.ndarray, window: int) -> None:
        """Rows in flight: jvp in the state with the input fixed; the new row: jvp in
        the input with the state fixed (two calls, so that neither pays for zero tangents)."""
        E, S, H = self.E, self.S, self.H
        x = self._embedded(p, tokens, p.k)
        leaves = tuple(h.unsqueeze(0) for h in p.hs)
        state = unflatten_state(leaves, self.structure)
        old, new = p.slots(p.slot, FULL)
        shift = int(inject)
        n_rows = keep + shift
        new_flat = new[:n_rows].view(n_rows * E, S)
        chosen = p.bufs[p.chosen][p.slot + 1][:n_rows].view(n_rows * E, H)
        new_leaves = None
        if keep:
            new_leaves, (t_leaves, t_sel) = self._push(
                lambda ls: self._output(self.model.step(x, unflatten_state(ls, self.structure))),
                leaves, self._split(old[:keep].reshape(keep * E, S)))
            torch.cat([t.reshape(keep * E, -1) for t in t_leaves], dim=1,
                      out=new_flat[shift * E :])
            chosen[shift * E :].copy_(t_sel.reshape(keep * E, H))
        if inject:  # the new row: d state_{k+1} / d x_k
            eye = torch.eye(E, device=x.device, dtype=x.dtype).unsqueeze(1)  # (E, 1, E)
            new_leaves, (t_leaves, t_sel) = self._push(
                lambda xk: self._output(self.model.step(xk, state)), x, eye)
            torch.cat([t.reshape(E, -1) for t in t_leaves], dim=1, out=new_flat[:E])
            chosen[:E].copy_(t_sel.reshape(E, H))
        if new_leaves is None:
            new_leaves = flatten_state(self.model.step(x, state))[0]
        p.hs = [leaf[0] for leaf in new_leaves]
        p.cur[FULL] = 1 - p.cur[FULL]
