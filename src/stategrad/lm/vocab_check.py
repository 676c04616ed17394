"""Does a model from elsewhere read its vocabulary in the order it was trained with?

A state dict carries no vocabulary, and a vocabulary of the right size in another
order runs silently with wrong numbers.  A model that reads its words right predicts
a text better than the text's own unigram distribution does; one whose ids are
shuffled predicts it far worse.  The check compares the two on the start of the text.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .models import LanguageModel, ModelError
from .recurrent import is_recurrent_lm, run_steps

CHECK_TOKENS = 5000


def vocabulary_fit(lm: LanguageModel, tokens: np.ndarray,
                   max_tokens: int = CHECK_TOKENS) -> tuple[float, float]:
    """(the model's perplexity, the unigram perplexity) on the first ``max_tokens``
    tokens of ``tokens``: the model run over them as one stream from a zero state, the
    unigram model the maximum-likelihood word frequencies of the same predicted tokens."""
    ids = np.asarray(tokens[:max_tokens], dtype=np.int64)
    if len(ids) < 2:
        raise ModelError("the vocabulary check needs a text of at least 2 tokens")
    module = lm.module
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            weight = next(module.parameters())
            inputs = torch.as_tensor(ids[:-1], device=weight.device).unsqueeze(1)
            logits, _ = run_steps(module, inputs) if is_recurrent_lm(module) else module(inputs)
            targets = torch.as_tensor(ids[1:], device=weight.device)
            nll = torch.nn.functional.cross_entropy(logits[:, 0].double(), targets)
    finally:
        module.train(was_training)
    counts = np.bincount(ids[1:]).astype(np.float64)
    p = counts[counts > 0] / counts.sum()
    unigram = float(np.exp(-(p * np.log(p)).sum()))
    return math.exp(float(nll)), unigram


def check_vocabulary_order(lm: LanguageModel, tokens: np.ndarray, *, force: bool = False,
                           max_tokens: int = CHECK_TOKENS) -> str | None:
    """Refuse (ModelError) a model that predicts the text worse than a unigram model:
    its vocabulary order probably does not match.  With ``force`` the refusal is
    returned as a warning instead.  None when the model passes."""
    model_ppl, unigram_ppl = vocabulary_fit(lm, tokens, max_tokens)
    if model_ppl <= unigram_ppl:
        return None
    n = min(len(tokens), max_tokens)
    message = (f"the model's perplexity on the first {n} tokens is {model_ppl:.4g}, worse than "
               f"a unigram model of the text ({unigram_ppl:.4g}): the vocabulary order probably "
               "does not match the model's (for word_language_model: `stategrad vocab "
               "--word-language-model DATA_DIR`)")
    if not force:
        raise ModelError(message + "; --force goes on anyway")
    return message
