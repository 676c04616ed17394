"""How the parameters move: the optimizer, the learning-rate schedule, the original's
early stopping, and the sampled softmax (log-uniform sampler, as TensorFlow's
``sampled_softmax_loss``) that training may use instead of the full one."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .config import ConfigError, TrainConfig, learning_rate_for_epoch

# --- schedule and early stopping ----------------------------------------------------------

def learning_rate(config: TrainConfig, epoch: int) -> float:
    """Learning rate of ``epoch`` (counted from 0), the original's schedule."""
    return learning_rate_for_epoch(config.training, epoch)


@dataclass
class EarlyStopping:
    """The original's ``earlyStopping`` trainer.

    It keeps the last ``patience`` validation perplexities.  From epoch index
    ``patience`` on, every one of them that the new perplexity does not beat (``>=``)
    counts one failure; failures are never reset.  Training stops once there are
    ``patience`` failures, and the epoch that triggers the stop is not saved.
    """

    patience: int
    previous: list[float] = field(default_factory=list)
    failures: int = 0

    def update(self, epoch: int, valid_ppl: float) -> bool:
        """Record the perplexity of ``epoch`` (from 0); True means stop now."""
        if epoch > self.patience - 1:
            self.failures += sum(1 for prev in self.previous if valid_ppl >= prev)
            if self.previous:
                self.previous.pop(0)
        self.previous.append(valid_ppl)
        return self.failures >= self.patience

    def state(self) -> dict[str, Any]:
        return {"patience": self.patience, "previous": list(self.previous),
                "failures": self.failures}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> EarlyStopping:
        return cls(int(state["patience"]), [float(p) for p in state["previous"]],
                   int(state["failures"]))


# --- sampled softmax ----------------------------------------------------------------------

class LogUniformSampler:
    """Unique negative classes from P(k) = log((k+2)/(k+1)) / log(V+1), like TensorFlow.

    Ids are assumed ordered by falling frequency (the vocabulary's order).  Samples
    are drawn with rejection until ``num_sampled`` are distinct; the expected count
    of class k is then ``1 - (1 - P(k)) ** tries``, TensorFlow's correction for
    ``unique=True``.  Draws use the global torch RNG, so they are seeded and
    checkpointed with everything else.
    """

    def __init__(self, vocab_size: int, num_sampled: int):
        if num_sampled >= vocab_size:
            raise ConfigError(f"training.num_sampled ({num_sampled}) must be smaller than the "
                              f"vocabulary ({vocab_size} words); use softmax = 'full'")
        self.vocab_size = vocab_size
        self.num_sampled = num_sampled
        k = torch.arange(vocab_size, dtype=torch.float64)
        self.log_range = math.log(vocab_size + 1)
        self.prob = (torch.log(k + 2) - torch.log(k + 1)) / self.log_range

    def sample(self) -> tuple[torch.Tensor, int]:
        chosen: list[int] = []
        seen: set[int] = set()
        tries = 0
        while len(chosen) < self.num_sampled:
            u = torch.rand(2 * self.num_sampled, dtype=torch.float64)
            draws = (torch.exp(u * self.log_range) - 1).floor().long().clamp_(0, self.vocab_size - 1)
            for value in draws.tolist():
                tries += 1
                if value not in seen:
                    seen.add(value)
                    chosen.append(value)
                    if len(chosen) == self.num_sampled:
                        break
        return torch.tensor(chosen, dtype=torch.long), tries

    def log_expected_count(self, ids: torch.Tensor, tries: int) -> torch.Tensor:
        p = self.prob[ids.cpu()]
        return torch.log(-torch.expm1(tries * torch.log1p(-p)))


def sampled_softmax_cost(hidden: torch.Tensor, targets: torch.Tensor, decoder: nn.Linear,
                         sampler: LogUniformSampler) -> torch.Tensor:
    """Summed sampled-softmax cross entropy of ``hidden`` (N, H) against ``targets`` (N,)."""
    sampled, tries = sampler.sample()
    device = hidden.device
    sampled = sampled.to(device)
    log_q_true = sampler.log_expected_count(targets, tries).to(device, hidden.dtype)
    log_q_sampled = sampler.log_expected_count(sampled, tries).to(device, hidden.dtype)
    weight, bias = decoder.weight, decoder.bias
    true_logit = (hidden * weight[targets]).sum(-1) + bias[targets] - log_q_true
    sampled_logit = hidden @ weight[sampled].t() + bias[sampled] - log_q_sampled
    # a negative that happens to be the target is not a negative ("remove accidental hits")
    sampled_logit = sampled_logit.masked_fill(sampled[None, :] == targets[:, None], float("-inf"))
    logits = torch.cat([true_logit[:, None], sampled_logit], dim=1)
    return (torch.logsumexp(logits, dim=1) - true_logit).sum()


def make_optimizer(config: TrainConfig, params: list[nn.Parameter]) -> torch.optim.Optimizer:
    lr = config.training.learning_rate
    name = config.training.optimizer
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    # TensorFlow's Adagrad (the original's) starts its accumulators at 0.1, not 0
    return torch.optim.Adagrad(params, lr=lr, initial_accumulator_value=0.1)
