"""Where the random numbers of one training step come from.

Every stochastic piece of the hot loop (read noise, output noise, the random pulse trains of
the stochastic update, the cycle-to-cycle noise of partial-SET pulses) asks a noise source
for a tensor of a given shape.  Two sources give the same interface:

* :class:`GeneratorNoise` draws each tensor when asked, from a ``torch.Generator``;
* :class:`BufferNoise` hands out consecutive pieces of two flat buffers (uniform and
  standard normal) drawn beforehand.  A training step draws its buffers in two calls, outside
  any compiled region, so the step itself is a pure tensor function that ``torch.compile``
  can fuse, and the generator alone still fixes every result (same seed, same run; a resumed
  run continues the same stream).
"""

from __future__ import annotations

import math

import torch


class GeneratorNoise:
    """Draws on demand from ``generator``."""

    def __init__(self, generator: torch.Generator | None, device: torch.device | str, dtype: torch.dtype):
        self.generator, self.device, self.dtype = generator, device, dtype

    def uniform(self, shape: tuple[int, ...]) -> torch.Tensor:
        return torch.rand(shape, generator=self.generator, device=self.device, dtype=self.dtype)

    def normal(self, shape: tuple[int, ...]) -> torch.Tensor:
        return torch.randn(shape, generator=self.generator, device=self.device, dtype=self.dtype)


class BufferNoise:
    """Consecutive pieces of pre-drawn buffers; ``uniform``/``normal`` return views."""

    def __init__(self, uniform: torch.Tensor | None, normal: torch.Tensor | None):
        self._u, self._z = uniform, normal
        self._iu = 0
        self._iz = 0

    def _take(self, buf: torch.Tensor | None, start: int, shape: tuple[int, ...]) -> tuple[torch.Tensor, int]:
        n = math.prod(shape)
        if buf is None or start + n > buf.shape[0]:
            raise RuntimeError("noise buffer exhausted: the step asked for more random numbers than were drawn")
        return buf[start:start + n].view(shape), start + n

    def uniform(self, shape: tuple[int, ...]) -> torch.Tensor:
        out, self._iu = self._take(self._u, self._iu, shape)
        return out

    def normal(self, shape: tuple[int, ...]) -> torch.Tensor:
        out, self._iz = self._take(self._z, self._iz, shape)
        return out

    def unused(self) -> tuple[int, int]:
        """Numbers drawn but not handed out (uniform, normal); a correct demand leaves (0, 0)."""
        nu = 0 if self._u is None else self._u.shape[0] - self._iu
        nz = 0 if self._z is None else self._z.shape[0] - self._iz
        return nu, nz


NoiseSource = GeneratorNoise | BufferNoise
