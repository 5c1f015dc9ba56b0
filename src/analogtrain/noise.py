"""Where the random numbers of one training step come from.

Every stochastic piece of the hot loop (read noise, output noise, the random pulse trains of
the stochastic update, the cycle-to-cycle noise of partial-SET pulses) asks a noise source
for a tensor of a given shape.  Two sources give the same interface:

* :class:`GeneratorNoise` draws each tensor when asked, from a ``torch.Generator``;
* :class:`BufferNoise` hands out consecutive pieces of two flat buffers (random words and
  standard normals) drawn beforehand.  A training step draws its buffers in two calls, outside
  any compiled region, so the step itself is a pure tensor function that ``torch.compile``
  can fuse, and the generator alone still fixes every result (same seed, same run; a resumed
  run continues the same stream).

Random words.  The pulse trains of the stochastic update need one Bernoulli draw per slot
(tens of thousands per example).  Like a hardware stochastic-pulse generator, which compares
a random word with the probability, each slot gets a random 16-bit word ``w`` (uniform on
0..65535) and fires when ``(w + 1/2) / 2^16 < p`` (:func:`fires`), i.e. with probability
``p`` rounded to the nearest multiple of ``2^-16`` (an error below ``8e-6``).  Four words
come from each 64-bit draw of the generator: about three times faster than drawing float
uniforms, which was a tenth of a compiled training step.
"""

from __future__ import annotations

import math

import torch

#: bits of one random word; a slot's firing probability is resolved to 2**-WORD_BITS
WORD_BITS = 16
_WORDS_PER_DRAW = 64 // WORD_BITS
_HALF = float(2 ** (WORD_BITS - 1))


def draw_words(n: int, generator: torch.Generator | None, device) -> torch.Tensor:
    """``n`` random 16-bit words (int16 storage, every bit pattern equally likely), 4 per 64-bit draw."""
    raw = torch.empty((n + _WORDS_PER_DRAW - 1) // _WORDS_PER_DRAW, dtype=torch.int64, device=device)
    raw.random_(-2**63, None, generator=generator)  # the full 64-bit range
    return raw.view(torch.int16)[:n]


def fires(words: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """True where a slot fires: ``(w + 1/2) / 2^16 < p`` for the unsigned value w of each word.

    ``words`` (int16, read as w - 2^15) broadcast against the probabilities ``p``; each is True
    with probability ``round(p 2^16) / 2^16`` (``p`` clipped to [0, 1]).
    """
    return words.lt(p * (2 * _HALF) - (_HALF + 0.5))


class GeneratorNoise:
    """Draws on demand from ``generator``."""

    def __init__(self, generator: torch.Generator | None, device: torch.device | str, dtype: torch.dtype):
        self.generator, self.device, self.dtype = generator, device, dtype

    def words(self, shape: tuple[int, ...]) -> torch.Tensor:
        return draw_words(math.prod(shape), self.generator, self.device).view(shape)

    def normal(self, shape: tuple[int, ...]) -> torch.Tensor:
        return torch.randn(shape, generator=self.generator, device=self.device, dtype=self.dtype)


class BufferNoise:
    """Consecutive pieces of pre-drawn buffers; ``words``/``normal`` return views."""

    def __init__(self, words: torch.Tensor | None, normal: torch.Tensor | None):
        self._u, self._z = words, normal
        self._iu = 0
        self._iz = 0

    def _take(self, buf: torch.Tensor | None, start: int, shape: tuple[int, ...]) -> tuple[torch.Tensor, int]:
        n = math.prod(shape)
        if buf is None or start + n > buf.shape[0]:
            raise RuntimeError("noise buffer exhausted: the step asked for more random numbers than were drawn")
        return buf[start:start + n].view(shape), start + n

    def words(self, shape: tuple[int, ...]) -> torch.Tensor:
        out, self._iu = self._take(self._u, self._iu, shape)
        return out

    def normal(self, shape: tuple[int, ...]) -> torch.Tensor:
        out, self._iz = self._take(self._z, self._iz, shape)
        return out

    def unused(self) -> tuple[int, int]:
        """Numbers drawn but not handed out (words, normal); a correct demand leaves (0, 0)."""
        nu = 0 if self._u is None else self._u.shape[0] - self._iu
        nz = 0 if self._z is None else self._z.shape[0] - self._iz
        return nu, nz


NoiseSource = GeneratorNoise | BufferNoise
