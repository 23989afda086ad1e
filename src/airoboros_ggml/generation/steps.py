"""The token-level step generator: prefill, then one token per step, over token ids and the KV cache.

Two layers, apart from text (detokenizing, stops: :mod:`.text_stream`):

- :class:`TokenSelector` is the per-sequence decision of a step: the model's logits go through the logits
  processors in order (bias, penalties, a grammar mask, ...) and then the sampler chain; the chosen token
  is appended to the sequence's tokens. It never evaluates the model, so a batch scheduler that evaluates
  many sequences in one forward pass drives one selector per sequence with that sequence's logits.
- :class:`StepGenerator` is the single-sequence loop: it evaluates the prompt (the part not already cached)
  through an ``evaluate`` callable, then yields one :class:`Step` per token and evaluates each token only
  when the next step is asked for, so a consumer that stops (end of generation, stop string) never pays
  for evaluating the last token.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence

import numpy as np

from .processors import LogitsProcessor

__all__ = ["Evaluate", "Step", "StepGenerator", "TokenSelector"]

Evaluate = Callable[[Sequence[int]], np.ndarray]
"""``evaluate(tokens) -> float32 (n_vocab,)``: run tokens after the sequence's cached ones (appending them
to its KV cache) and return the logits after the last one."""


@dataclasses.dataclass(frozen=True)
class Step:
    """One generated token and the model's logits it was chosen from."""

    token: int
    """The chosen token id."""
    logits: np.ndarray
    """float32 (n_vocab,) the model's logits for this position, before any logits processor."""

    def logprobs(self) -> np.ndarray:
        """float32 (n_vocab,) log-softmax of :attr:`logits`."""
        x = self.logits - self.logits.max()  # float32 (n_vocab,)
        return x - np.log(np.exp(x).sum(dtype=np.float32))


class TokenSelector:
    """Chooses the next tokens of one sequence: logits processors in order, then the sampler.

    Args:
        tokens: the sequence so far (prompt ids); chosen tokens are appended.
        sampler: ``sampler(logits) -> token id`` on processed float32 (n_vocab,) logits, e.g.
            :meth:`airoboros_ggml.sampling.Sampler.choose`.
        logits_processors: ``processor(tokens, logits) -> logits`` callables, applied in order.
    """

    def __init__(
        self,
        tokens: Sequence[int],
        sampler: Callable[[np.ndarray], int],
        logits_processors: Sequence[LogitsProcessor] = (),
    ):
        self.tokens: list[int] = list(tokens)
        """Prompt and chosen tokens, oldest first."""
        self.sampler = sampler
        self.logits_processors = list(logits_processors)

    def __call__(self, logits: np.ndarray) -> Step:
        """Choose the token that follows :attr:`tokens` given the model's logits float32 (n_vocab,)."""
        x = np.array(logits, dtype=np.float32)  # float32 (n_vocab,) private copy the processors may modify
        for processor in self.logits_processors:
            x = processor(self.tokens, x)
        token = int(self.sampler(x))
        self.tokens.append(token)
        return Step(token, logits)


class StepGenerator(Iterator[Step]):
    """Generate tokens one step at a time from a prompt.

    Args:
        prompt: prompt token ids (also the start of the tokens the processors see).
        evaluate: runs tokens on the model after the cached ones and returns the last logits.
        sampler: ``sampler(logits) -> token id`` (see :class:`TokenSelector`).
        logits_processors: applied in order before the sampler.
        max_tokens: steps to yield at most (None: until the consumer stops or ``evaluate`` runs out of context).
        n_cached: prompt tokens already in the cache (KV reuse): only ``prompt[n_cached:]`` is evaluated.
    """

    def __init__(
        self,
        prompt: Sequence[int],
        evaluate: Evaluate,
        sampler: Callable[[np.ndarray], int],
        logits_processors: Sequence[LogitsProcessor] = (),
        *,
        max_tokens: int | None = None,
        n_cached: int = 0,
    ):
        if not 0 <= n_cached < len(prompt):
            raise ValueError(f"at least one of the {len(prompt)} prompt tokens must be evaluated, {n_cached} cached")
        self.prompt = list(prompt)
        self.selector = TokenSelector(prompt, sampler, logits_processors)
        self.max_tokens = max_tokens
        self.n_cached = n_cached
        self.n_generated = 0
        """Steps yielded so far."""
        self._evaluate = evaluate
        self._logits: np.ndarray | None = None  # float32 (n_vocab,) logits of the next position
        self._unevaluated: int | None = None  # the last yielded token, evaluated on the next step

    def prefill(self) -> np.ndarray:
        """Evaluate the uncached part of the prompt (once; the first step does it if not called).

        Returns:
            float32 (n_vocab,) the logits after the prompt.
        """
        if self._logits is None:
            self._logits = self._evaluate(self.prompt[self.n_cached :])
        return self._logits

    def __next__(self) -> Step:
        """Evaluate the previous token (if any), then choose the next one."""
        if self.max_tokens is not None and self.n_generated >= self.max_tokens:
            raise StopIteration
        if self._unevaluated is None:
            logits = self.prefill()
        else:
            logits = self._logits = self._evaluate([self._unevaluated])
        step = self.selector(logits)
        self._unevaluated = step.token
        self.n_generated += 1
        return step
