"""The protocol of a recurrent language model the state gradient engine can analyse.

Any model that runs one token at a time from a state of fixed size fits: an LSTM with
projections, a stack of differently sized LSTMs (AWD-LSTM), a selective state-space model.
It is an ``nn.Module`` (so that the engine can copy it to its device and dtype and hash
its parameters) with these members::

    class ToyLM(nn.Module):                      # h' = tanh(W x + U h)
        state_names = ("hidden",)                # the parts of the state one can analyse
        num_layers = 1

        def __init__(self, V, E, H):
            super().__init__()
            self.emb, self.W, self.U = nn.Embedding(V, E), nn.Linear(E, H), nn.Linear(H, H)
            self.out = nn.Linear(H, V)
            self.vocab_size = V

        def embed(self, ids):                    # (B,) ids -> (B, E)
            return self.emb(ids)

        def initial_state(self, batch, device, dtype):
            return {"hidden": torch.zeros(batch, self.U.in_features, device=device, dtype=dtype)}

        def step(self, x, state):                # (B, E), state -> state; a pure function
            return {"hidden": torch.tanh(self.W(x) + self.U(state["hidden"]))}

        def select(self, state, name, layer):    # -> (B, H_sel): picks entries, no arithmetic
            return state[name]

        def logits(self, state):                 # -> (B, V)
            return self.out(state["hidden"])

Optional: ``features(state) -> (B, H)`` with a linear ``decoder`` such that ``logits(state)
== decoder(features(state))``.  Context ablation then keeps H numbers per prediction
instead of V (without them it keeps the logits).

The state is a tensor or a (nested) tuple, list or dict of tensors, each with a leading
batch dimension.  ``step`` must be a pure function of its inputs (no in-place changes of
its arguments, no ``.item()``, no data-dependent Python branches), so that
``torch.func.jvp`` and ``torch.func.vmap`` can run through it; ``select`` must pick
entries of the state (index, slice, reshape, concatenate), since the engine applies it to
tangents as well as to states.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

State = Any  # a tensor, or a tuple/list/dict of states

_MEMBERS = ("embed", "initial_state", "step", "select", "logits")


class RecurrentLM(nn.Module):
    """Base class to subclass (optional: any ``nn.Module`` with these members will do)."""

    state_names: Sequence[str] = ()
    num_layers: int = 1
    vocab_size: int = 0

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def initial_state(self, batch: int, device, dtype) -> State:
        raise NotImplementedError

    def step(self, x: torch.Tensor, state: State) -> State:
        raise NotImplementedError

    def select(self, state: State, name: str, layer: int) -> torch.Tensor:
        raise NotImplementedError

    def logits(self, state: State) -> torch.Tensor:
        raise NotImplementedError


def is_recurrent_lm(obj: Any) -> bool:
    """Whether ``obj`` implements the protocol (an ``nn.Module`` with its members)."""
    return (isinstance(obj, nn.Module) and all(callable(getattr(obj, m, None)) for m in _MEMBERS)
            and bool(getattr(obj, "state_names", ())))


def missing_members(obj: Any) -> list[str]:
    """The protocol members ``obj`` lacks, for an error message."""
    missing = [m for m in _MEMBERS if not callable(getattr(obj, m, None))]
    if not getattr(obj, "state_names", ()):
        missing.append("state_names")
    return missing


# --- states as flat lists of tensors (what the engine carries tangents for) ----------------

def flatten_state(state: State) -> tuple[list[torch.Tensor], Any]:
    """The tensors of a state in a fixed order, and the structure to rebuild it."""
    if isinstance(state, torch.Tensor):
        return [state], None
    if isinstance(state, dict):
        keys = sorted(state)
        leaves, specs = [], []
        for k in keys:
            sub, spec = flatten_state(state[k])
            leaves += sub
            specs.append((len(sub), spec))
        return leaves, ("dict", keys, specs)
    if isinstance(state, (tuple, list)):
        leaves, specs = [], []
        for item in state:
            sub, spec = flatten_state(item)
            leaves += sub
            specs.append((len(sub), spec))
        return leaves, (type(state).__name__, None, specs)
    raise TypeError(f"a recurrent state holds tensors, tuples, lists and dicts; got "
                    f"{type(state).__name__}")


def unflatten_state(leaves: Sequence[torch.Tensor], structure: Any) -> State:
    """The inverse of :func:`flatten_state`."""
    if structure is None:
        return leaves[0]
    kind, keys, specs = structure
    parts, i = [], 0
    for n, spec in specs:
        parts.append(unflatten_state(leaves[i : i + n], spec))
        i += n
    if kind == "dict":
        return dict(zip(keys, parts, strict=True))
    return tuple(parts) if kind == "tuple" else list(parts)


def embedding_matrix(model: nn.Module) -> torch.Tensor:
    """The (V, E) input embeddings of a protocol model: ``embed`` of every id."""
    with torch.no_grad():
        device = next(model.parameters()).device
        return model.embed(torch.arange(int(model.vocab_size), device=device)).detach()


def run_steps(model: nn.Module, ids: torch.Tensor, state: State | None = None
              ) -> tuple[torch.Tensor, State]:
    """Logits (T, B, V) of a protocol model over time-major ids (T, B), one ``step`` per
    position from ``state`` (default: its initial state), and the state after them."""
    if state is None:
        weight = next(model.parameters())
        state = model.initial_state(ids.shape[1], ids.device, weight.dtype)
    out = []
    for t in range(ids.shape[0]):
        state = model.step(model.embed(ids[t]), state)
        out.append(model.logits(state))
    return torch.stack(out), state
