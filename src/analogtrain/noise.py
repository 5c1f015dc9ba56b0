"""Where the random numbers of one training step come from.

Every stochastic piece of the hot loop (read noise, output noise, the random pulse trains of
the stochastic update, the cycle-to-cycle noise of partial-SET pulses) asks a noise source
for a tensor of a given shape.  Two sources give the same interface:

* :class:`GeneratorNoise` draws each tensor when asked, from a ``torch.Generator`` or from
  :class:`ChipStreams`;
* :class:`BufferNoise` hands out consecutive pieces of two buffers per chip (random words and
  standard normals) drawn beforehand.  A training step draws its buffers outside any compiled
  region, so the step itself is a pure tensor function that ``torch.compile`` can fuse, and the
  streams alone still fix every result (same seed, same run; a resumed run continues the same
  streams).

One stream per chip.  The chips of a run are independent copies of the chip, and
:class:`ChipStreams` gives each its own generator: every random number a chip uses (its
fabrication draws, its programming and read noise, its pulse trains) comes from its own
stream, and a draw that only some chips need (a closed-loop tuning step of a chip whose devices
have not all converged) is drawn from those chips' streams only.  So a chip trains the same,
bit for bit, whether it trains alone or beside others.  Tensors drawn from chip streams have
the chips as their first dimension.

Normals for pulsed cells only.  The cycle-to-cycle noise of a partial-SET pulse is needed
only by the cells that receive pulses in an update, a few percent of an array's cells in a
typical step.  :func:`pulsed_normals` draws, from each chip's stream, exactly as many normals
as that chip has pulsed cells (in the cells' memory order) and leaves the other cells zero.
Inside a compiled step this is one opaque operator (``analogtrain::pulsed_normals``, as the
count is known only once the pulse counts are), so the step still draws every other number
beforehand.  On a GPU, where counting would synchronise with the host, every cell's normal is
drawn beforehand with the others (:func:`sparse_normals`) and the unpulsed cells' are unused:
the same distribution from a different stream.

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
import weakref
from collections.abc import Sequence

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


class ChipStreams:
    """One random stream (a ``torch.Generator``) per chip; see the module docstring.

    ``get_state``/``set_state`` save and restore every stream at once (a ``[chips, n]`` byte
    tensor), as a ``torch.Generator``'s do for one.
    """

    def __init__(self, seeds: Sequence[int], device: torch.device | str = "cpu"):
        if not seeds:
            raise ValueError("ChipStreams needs at least one chip")
        self.device = torch.device(device)
        self.seeds = [int(s) for s in seeds]
        self.generators = [torch.Generator(device=self.device).manual_seed(s) for s in self.seeds]

    @classmethod
    def seeded(cls, seed: int, chips: Sequence[int], device: torch.device | str = "cpu") -> ChipStreams:
        """The streams of chips ``chips`` (their indices) of a run with seed ``seed``: chip c's stream
        depends on (seed, c) only."""
        return cls([seed * 7_919 + 17 + 1_000_003 * int(c) for c in chips], device)

    def __len__(self) -> int:
        return len(self.generators)

    def subset(self, start: int, stop: int) -> ChipStreams:
        """The streams of chips ``start .. stop-1``: the same generators (drawing from the subset
        advances them), for work done a group of chips at a time."""
        sub = ChipStreams.__new__(ChipStreams)
        sub.device, sub.seeds, sub.generators = self.device, self.seeds[start:stop], self.generators[start:stop]
        return sub

    def get_state(self) -> torch.Tensor:
        return torch.stack([g.get_state() for g in self.generators])

    def set_state(self, state: torch.Tensor) -> None:
        if state.dim() != 2 or state.shape[0] != len(self.generators):
            raise ValueError(f"random state for {state.shape[0] if state.dim() == 2 else 1} chip stream(s), "
                             f"this network has {len(self.generators)}")
        for g, s in zip(self.generators, state):
            g.set_state(s.clone())  # a row of its own: set_state reads the storage from its start


Streams = torch.Generator | ChipStreams | None


def chip_ranges(streams: Streams, chips: int, size: int) -> list[tuple[int, int]]:
    """Chip ranges [a, b) of at most ``size`` chips (at least one), for work done a group of chips
    at a time: with :class:`ChipStreams` a chip's draws do not depend on its group.  Any other
    generator is shared by all chips, so then the chips form one group."""
    if not isinstance(streams, ChipStreams):
        return [(0, chips)]
    size = max(1, size)
    return [(a, min(a + size, chips)) for a in range(0, chips, size)]


def _chips_first(streams: ChipStreams, shape: Sequence[int]) -> tuple[int, ...]:
    """The per-chip part of ``shape``, after checking that its first dimension is the chips."""
    if shape[0] != len(streams):
        raise ValueError(f"a draw from {len(streams)} chip streams needs the chips first, got {tuple(shape)}")
    return tuple(shape[1:])


def randn(shape: Sequence[int], generator: Streams, device, dtype: torch.dtype,
          chips: Sequence[bool] | None = None) -> torch.Tensor:
    """Standard normals of ``shape``.  From :class:`ChipStreams`, chip c's slice ``[c]`` comes from
    chip c's stream; with ``chips`` (one flag per chip) only the flagged chips draw and the others'
    slices are zero.  From a ``torch.Generator`` (or None: torch's default), one draw."""
    if not isinstance(generator, ChipStreams):
        return torch.randn(tuple(shape), generator=generator, device=device, dtype=dtype)
    _chips_first(generator, shape)
    out = torch.empty(tuple(shape), device=device, dtype=dtype)
    for c, g in enumerate(generator.generators):  # each chip's draw straight into its slice (no copy)
        if chips is None or chips[c]:
            out[c].normal_(generator=g)
        else:
            out[c].zero_()
    return out


def words(shape: Sequence[int], generator: Streams, device) -> torch.Tensor:
    """Random 16-bit words of ``shape`` (:func:`draw_words`); per chip from :class:`ChipStreams`."""
    if isinstance(generator, ChipStreams):
        n = math.prod(_chips_first(generator, shape))
        return torch.stack([draw_words(n, g, device) for g in generator.generators]).view(tuple(shape))
    return draw_words(math.prod(shape), generator, device).view(tuple(shape))


def sparse_normals(device: torch.device | str) -> bool:
    """Whether a step on ``device`` draws normals for its pulsed cells only (:func:`pulsed_normals`):
    on the CPU.  Elsewhere counting the pulsed cells would synchronise with the host, so every
    cell's normal is drawn beforehand with the step's other numbers."""
    return torch.device(device).type == "cpu"


def pulsed_normals(n: torch.Tensor, generator: Streams) -> torch.Tensor:
    """Standard normals where ``n`` is non-zero and zeros elsewhere, in ``n``'s shape (chips first
    with :class:`ChipStreams`).  Chip c draws from its own stream exactly as many normals as its
    slice of ``n`` has non-zero entries, so a chip's draws do not depend on the other chips.
    Counting them synchronises with the host off the CPU: the noise sources' ``pulsed_normal``
    call this only where :func:`sparse_normals` says so."""
    where = n.reshape(-1).nonzero().squeeze(1)  # a few percent of the cells, chip by chip
    if isinstance(generator, ChipStreams):
        per_chip = math.prod(_chips_first(generator, n.shape))
        counts = torch.bincount(where.div(per_chip, rounding_mode="floor"), minlength=len(generator)).tolist()
        z = torch.cat([torch.empty(k, dtype=n.dtype).normal_(generator=g)
                       for k, g in zip(counts, generator.generators)])
    else:
        z = torch.randn(int(where.numel()), generator=generator, dtype=n.dtype)
    return torch.zeros_like(n).view(-1).index_copy_(0, where, z).view(n.shape)


# The compiled step reaches its chips' streams through an integer key (an operator's arguments
# are tensors and numbers); the registry does not keep a network's streams alive.
_STREAMS: weakref.WeakValueDictionary[int, object] = weakref.WeakValueDictionary()


def streams_key(generator: Streams) -> int:
    """The key under which ``generator`` is found by the compiled ``pulsed_normals`` operator."""
    if generator is None:
        generator = torch.default_generator
    _STREAMS[id(generator)] = generator
    return id(generator)


@torch.library.custom_op("analogtrain::pulsed_normals", mutates_args=())
def _pulsed_normals_op(n: torch.Tensor, key: int, after: torch.Tensor) -> torch.Tensor:  # noqa: ARG001
    """``after``: the previous draw of the step, so the compiler keeps the draws (which advance
    the same streams) in the order the eager step makes them."""
    return pulsed_normals(n, _STREAMS[key])  # type: ignore[arg-type]


@_pulsed_normals_op.register_fake
def _(n: torch.Tensor, key: int, after: torch.Tensor) -> torch.Tensor:  # noqa: ARG001
    return torch.empty_like(n)


class GeneratorNoise:
    """Draws on demand from ``generator`` (a ``torch.Generator`` or :class:`ChipStreams`)."""

    def __init__(self, generator: Streams, device: torch.device | str, dtype: torch.dtype):
        self.generator, self.device, self.dtype = generator, device, dtype

    def words(self, shape: tuple[int, ...]) -> torch.Tensor:
        return words(shape, self.generator, self.device)

    def normal(self, shape: tuple[int, ...]) -> torch.Tensor:
        return randn(shape, self.generator, self.device, self.dtype)

    def pulsed_normal(self, n: torch.Tensor) -> torch.Tensor:
        """A standard normal for each cell with pulses in ``n``: drawn for those cells only
        (:func:`pulsed_normals`) where :func:`sparse_normals`, else one for every cell."""
        if not sparse_normals(n.device):
            return self.normal(tuple(n.shape))
        return pulsed_normals(n, self.generator)


class BufferNoise:
    """Consecutive pieces of pre-drawn per-chip buffers ``[chips, n]``; a request of shape
    ``(chips, ...)`` takes the next ``prod(...)`` numbers of every chip's buffer.  Normals for
    pulsed cells, whose number the step learns only as it goes, are drawn when asked from the
    streams of ``key`` (:func:`streams_key`)."""

    def __init__(self, words: torch.Tensor | None, normal: torch.Tensor | None, key: int | None = None):
        self._u, self._z, self._key = words, normal, key
        self._last: torch.Tensor | None = None  # the last draw for pulsed cells (orders the next)
        self._iu = 0
        self._iz = 0

    def _take(self, buf: torch.Tensor | None, start: int, shape: tuple[int, ...]) -> tuple[torch.Tensor, int]:
        n = math.prod(shape[1:])
        if buf is None or start + n > buf.shape[1] or shape[0] != buf.shape[0]:
            raise RuntimeError("noise buffer exhausted: the step asked for more random numbers than were drawn")
        return buf[:, start:start + n].reshape(shape), start + n

    def words(self, shape: tuple[int, ...]) -> torch.Tensor:
        out, self._iu = self._take(self._u, self._iu, shape)
        return out

    def normal(self, shape: tuple[int, ...]) -> torch.Tensor:
        out, self._iz = self._take(self._z, self._iz, shape)
        return out

    def pulsed_normal(self, n: torch.Tensor) -> torch.Tensor:
        """As :meth:`GeneratorNoise.pulsed_normal`; one normal for every cell comes from the
        buffer, drawn beforehand (the cells' ``update_normals`` asked for them)."""
        if not sparse_normals(n.device):
            return self.normal(tuple(n.shape))
        if self._key is None:
            raise RuntimeError("this noise buffer has no streams to draw normals for pulsed cells from")
        if torch.compiler.is_compiling():
            self._last = _pulsed_normals_op(n, self._key, n if self._last is None else self._last)
            return self._last
        return pulsed_normals(n, _STREAMS[self._key])  # type: ignore[arg-type]

    def unused(self) -> tuple[int, int]:
        """Numbers drawn but not handed out (words, normal); a correct demand leaves (0, 0)."""
        nu = 0 if self._u is None else self._u.shape[1] - self._iu
        nz = 0 if self._z is None else self._z.shape[1] - self._iz
        return nu, nz


NoiseSource = GeneratorNoise | BufferNoise


def noise_source(rng: Streams | NoiseSource, device: torch.device | str, dtype: torch.dtype) -> NoiseSource:
    """``rng`` as a noise source: a noise source as it is, a generator or chip streams (or None:
    torch's default generator) wrapped in a :class:`GeneratorNoise`."""
    if rng is None or isinstance(rng, (torch.Generator, ChipStreams)):
        return GeneratorNoise(rng, device, dtype)
    return rng
