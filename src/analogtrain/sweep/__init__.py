"""Parameter studies: ``analogtrain sweep SPEC.toml --out DIR``, points scheduled on Ray.

>>> from analogtrain.sweep import load_spec, run_sweep      # doctest: +SKIP
>>> summary = run_sweep(load_spec("examples/sweeps/smoke.toml"), "runs/smoke")   # doctest: +SKIP
"""

from .run import add_parser, run_sweep
from .spec import Point, SweepSpec, load_spec, parse_spec

__all__ = ["Point", "SweepSpec", "add_parser", "load_spec", "parse_spec", "run_sweep"]
