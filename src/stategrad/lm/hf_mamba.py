"""Hugging Face ``transformers`` Mamba models in the recurrent-model protocol.

``HFMamba(MambaForCausalLM(...))`` runs the Hugging Face model one token at a time with
its own parameters, through the same step as :class:`~stategrad.lm.mamba.MambaLM`
(Hugging Face's ``MambaMixer`` names its parameters as we do), so any layer's selective
scan state (``ssm``, d_inner x d_state), convolution state (``conv``, the last
d_conv - 1 inputs) or block output (``output``) can be analysed.

It needs no import of ``transformers`` itself (``pip install "stategrad[hf]"`` brings
it for building the model): it reads the model's modules by name.  Two details of
Hugging Face's forward are precision choices, not different functions, and the step
does not copy them: its RMSNorm computes in float32 and ``residual_in_fp32`` keeps the
residual in float32; here everything runs in the dtype the engine asks for.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .mamba import STATE_NAMES, protocol_step, rms_norm, select_part
from .models import ModelError

_MIXER_PARTS = ("in_proj", "conv1d", "x_proj", "dt_proj", "A_log", "D", "out_proj", "act",
                "intermediate_size", "ssm_state_size", "time_step_rank")


class HFMamba(nn.Module):
    """A ``transformers`` ``MambaForCausalLM`` (or ``MambaModel`` with a separate head) as
    a recurrent LM: ``embed``, ``initial_state``, a pure ``step``, ``select``, ``logits``."""

    state_names = STATE_NAMES

    def __init__(self, model: nn.Module):
        super().__init__()
        backbone = getattr(model, "backbone", model)
        layers = getattr(backbone, "layers", None)
        if layers is None or not hasattr(backbone, "embeddings") or not hasattr(backbone, "norm_f"):
            raise ModelError(f"{type(model).__name__} is not a Hugging Face Mamba model: "
                             "expected backbone.embeddings, backbone.layers, backbone.norm_f")
        for i, block in enumerate(layers):
            missing = [p for p in _MIXER_PARTS if not hasattr(getattr(block, "mixer", None), p)]
            if missing or not hasattr(block, "norm"):
                raise ModelError(f"layer {i} of {type(model).__name__} is not a Mamba block "
                                 f"(its mixer lacks {missing or ['norm']})")
        head = getattr(model, "lm_head", None)
        if head is None:
            raise ModelError(f"{type(model).__name__} has no lm_head: pass a MambaForCausalLM")
        self.model = model
        self.num_layers = len(layers)
        self.vocab_size = backbone.embeddings.num_embeddings

    @property
    def _backbone(self) -> nn.Module:
        return getattr(self.model, "backbone", self.model)

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        return self._backbone.embeddings(ids)

    def initial_state(self, batch: int, device=None, dtype=None) -> tuple[dict, ...]:
        weight = self._backbone.embeddings.weight
        opts: dict[str, Any] = {"device": device or weight.device, "dtype": dtype or weight.dtype}
        d_model = weight.shape[1]
        state = []
        for block in self._backbone.layers:
            m = block.mixer
            width = m.conv1d.weight.shape[-1]
            state.append({"ssm": torch.zeros(batch, m.intermediate_size, m.ssm_state_size, **opts),
                          "conv": torch.zeros(batch, m.intermediate_size, width - 1, **opts),
                          "output": torch.zeros(batch, d_model, **opts)})
        return tuple(state)

    def step(self, x: torch.Tensor, state: tuple[dict, ...]) -> tuple[dict, ...]:
        return protocol_step(self._backbone.layers, x, state)

    def select(self, state: tuple[dict, ...], name: str, layer: int) -> torch.Tensor:
        return select_part(state, name, layer)

    @property
    def decoder(self) -> nn.Module:
        return self.model.lm_head

    def features(self, state: tuple[dict, ...]) -> torch.Tensor:
        """What the linear head reads: the top block's output, normalised."""
        return rms_norm(state[-1]["output"], self._backbone.norm_f)

    def logits(self, state: tuple[dict, ...]) -> torch.Tensor:
        return self.model.lm_head(self.features(state))
