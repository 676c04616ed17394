"""The fast path: tangents of PyTorch's fused ``nn.LSTM``/``nn.GRU``/``nn.RNN``.

Each step's derivative is folded into the weights (``cells.py``), so advancing all D*E
tangents of a layer is one matrix product plus element-wise terms."""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np
import torch

from .cells import _layers, _WindowMaps, forward_window
from .options import EngineError
from .pass_state import Key, _Pass


class FusedCells:
    """The tangent step of a model with one fused recurrent module (``module.rnn``)."""

    def __init__(self, module: torch.nn.Module, layer: int, state: str, device, dtype):
        self.module = module
        self.layer = layer
        self.layers = _layers(module, layer, device, dtype)
        self.cell = self.layers[0].cell
        if state not in ("cell", "hidden"):
            raise EngineError(f"state {state!r} (--state) is not one of an {self.cell.upper()}'s "
                              "states: cell, hidden")
        if state == "cell" and self.cell != "lstm":
            raise EngineError(f"a {self.cell.upper()} has no cell state; use state='hidden'")
        self.state = state
        emb = module.embedding if hasattr(module, "embedding") else module.encoder
        self.embedding = emb.weight.detach().to(device, dtype)
        self.device, self.dtype = device, dtype
        self.V, self.E = self.embedding.shape
        self.H = self.layers[0].w_hh_t.shape[0]
        self.lstm = self.cell == "lstm"

    # -- the pass's buffers and states ---------------------------------------------------
    def buffers(self, rows: int, window: int, device, dtype) -> tuple[dict[Key, torch.Tensor], Key]:
        chosen = (self.layer, "c" if self.state == "cell" else "h")
        comps = ("h", "c") if self.lstm else ("h",)
        bufs = {(l, comp): torch.zeros(window + 1 if (l, comp) == chosen else 2, rows,
                                       self.E, self.H, device=device, dtype=dtype)
                for l in range(self.layer + 1) for comp in comps}
        return bufs, chosen

    def state_shapes(self):
        return [((self.H,), (self.H,) if self.lstm else None)] * (self.layer + 1)

    def pass_state(self, state):
        return [(h, c) for h, c in state]

    def states_before(self, tokens: np.ndarray, starts: Sequence[int], chunk: int | None,
                      device) -> dict:
        L = self.layer + 1

        def snapshot(state):
            if state is None:
                zeros = torch.zeros(self.H, device=device, dtype=self.dtype)
                return [(zeros.clone(), zeros.clone() if self.lstm else None) for _ in range(L)]
            h, c = state if self.lstm else (state, None)
            return [(h[l, 0].to(device).clone(), c[l, 0].to(device).clone() if self.lstm else None)
                    for l in range(L)]

        out = {}
        wanted = sorted(set(int(s) for s in starts))
        if wanted == [0]:
            return {0: snapshot(None)}
        with torch.no_grad():
            # A copy, so that the user's module keeps its device and dtype.
            rnn = copy.deepcopy(self.module.rnn).to(self.device, self.dtype).eval()
            state, pos = None, 0
            for target in wanted:
                while pos < target:
                    hi = target if chunk is None else min(target, pos + chunk)
                    ids = torch.as_tensor(tokens[pos:hi], device=self.device)
                    _, state = rnn(self.embedding[ids].unsqueeze(1), state)
                    pos = hi
                out[target] = snapshot(state)
        return out

    # -- one step ------------------------------------------------------------------------
    def _input_projection(self, p: _Pass, tokens: np.ndarray, pos: int) -> torch.Tensor:
        """Layer 0's input projection at ``pos``, computed for a span of positions at once."""
        base = pos - pos % 1024
        if base not in p.x_proj:
            p.x_proj.clear()
            ids = torch.as_tensor(tokens[base : base + 1024], device=self.device)
            p.x_proj[base] = self.embedding[ids] @ self.layers[0].w_ih_t + self.layers[0].bias
        return p.x_proj[base][pos - base]

    def advance(self, p: _Pass, keep: int, inject: bool, tokens: np.ndarray, window: int) -> None:
        if p.slot == 0:  # a new window: its forward pass and tangent maps, all at once
            n = min(window, p.end - p.k)
            p.window_maps = forward_window(
                self.layers, p.k, n, p.hs, p.cs,
                lambda pos: self._input_projection(p, tokens, pos))
        if self.lstm and (p.scratch is None or p.scratch.shape[0] < p.bufs[p.chosen].shape[1] * self.E):
            buf = p.bufs[p.chosen]
            p.scratch = torch.empty(buf.shape[1] * self.E, 2 * self.H, device=buf.device,
                                    dtype=buf.dtype)
        below = None  # the new dh tangent of the layer below
        for l in range(len(self.layers)):
            below = self._layer_step(p, l, keep, inject, below)

    def _layer_step(self, p: _Pass, l: int, keep: int, inject: bool,
                    below: torch.Tensor | None) -> torch.Tensor:
        """One layer's tangents at step k from its previous ones (the first ``keep`` rows)
        and the layer below's new dh (``below``); a fresh row at the top if ``inject``.
        Returns this layer's new dh buffer."""
        E, H = self.E, self.H
        lstm = self.lstm
        wm = p.window_maps[l]
        s = p.slot
        maps = _WindowMaps(wm.m_in[s], wm.m_rec[s], None if wm.diag_c is None else wm.diag_c[s],
                           None if wm.diag_h is None else wm.diag_h[s])
        old_h, new_h = p.slots(s, (l, "h"))
        if lstm:
            old_c, new_c = p.slots(s, (l, "c"))
        shift = 1 if inject else 0
        n_rows = keep + shift
        if n_rows:
            # GRU/RNN tangents are written straight into their buffer; an LSTM's
            # [dc | dh] product goes to scratch and is combined on the way out.
            out = p.scratch[: n_rows * E] if lstm else new_h[:n_rows].view(-1, H)
            rec_out = out[shift * E :]
            if l == 0:
                if keep:
                    torch.mm(old_h[:keep].view(-1, H), maps.m_rec, out=rec_out)
                if inject:
                    out[:E].copy_(maps.m_in)
            else:
                torch.mm(below[:n_rows].view(-1, H), maps.m_in, out=out)
                if keep:
                    rec_out.addmm_(old_h[:keep].view(-1, H), maps.m_rec)
            if lstm:
                nc = new_c[:n_rows].view(-1, H)
                nh = new_h[:n_rows].view(-1, H)
                lo = shift * E
                if shift:
                    nc[:lo].copy_(out[:lo, :H])
                    nh[:lo].copy_(out[:lo, H:])
                if keep:
                    prev_c = old_c[:keep].view(-1, H)
                    torch.addcmul(out[lo:, :H], prev_c, maps.diag_c, out=nc[lo:])
                    torch.addcmul(out[lo:, H:], prev_c, maps.diag_h, out=nh[lo:])
            elif keep and maps.diag_h is not None:
                rec_out.addcmul_(old_h[:keep].view(-1, H), maps.diag_h)
        for comp in (("h", "c") if lstm else ("h",)):
            if (l, comp) != p.chosen:
                p.cur[(l, comp)] = 1 - p.cur[(l, comp)]
        return new_h
