"""benchmarks/transfer_sawtooth.py: measuring within transfer intervals must not change training,
and what it measures must follow the transfer (the 3T1C term is reset at each transfer)."""

from __future__ import annotations

import importlib.util
from argparse import Namespace

import pytest
import torch
from conftest import REPO_ROOT

import analogtrain as at

_spec = importlib.util.spec_from_file_location("transfer_sawtooth", REPO_ROOT / "benchmarks" / "transfer_sawtooth.py")
saw = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(saw)

# a short interval and a slow chip clock, so a held reference drifts visibly within one interval
OVERRIDES = {"training": {"hidden": [16], "compile": "off", "time_per_example_s": 2e-5},
             "chip": {"transfer": {"interval_examples": 200}}}


@pytest.fixture(scope="module")
def digits():
    return at.load_dataset("digits")


def _args(**kw) -> Namespace:
    base = dict(warmup_epochs=0, intervals=2, every=50, test=300, chips=2, seed=3, quiet=True)
    return Namespace(**{**base, **kw})


def test_measuring_leaves_training_unchanged(digits):
    args = _args()
    measured = saw.build_trainer(digits, "nature2018-held-reference", OVERRIDES, args)
    run = saw.follow(measured, args)
    plain = saw.build_trainer(digits, "nature2018-held-reference", OVERRIDES, args)
    _, stop = saw.window(plain, args)
    plain.train(progress=False, on_step=lambda tr: tr.state.examples_seen >= stop)
    assert measured.state.examples_seen == plain.state.examples_seen == stop
    assert measured.tuning_pulses == plain.tuning_pulses
    for a, b in zip(measured.mlp.layers, plain.mlp.layers):
        # the same update pulses and the same transfers: the random stream was put back
        assert torch.equal(a.update_pulses, b.update_pulses)
        assert torch.equal(a.cells.polarity, b.cells.polarity)
        # measuring applies the deferred leakage at that moment: float rounding differs, nothing else
        for name in ("v", "g_plus", "g_minus"):
            torch.testing.assert_close(getattr(a.cells, name), getattr(b.cells, name), rtol=0, atol=1e-4)
        torch.testing.assert_close(a.weights(), b.weights(), rtol=0, atol=1e-5)
    # every 50 examples from the start (no warm-up: the window opens at example 0), and one
    # example before each transfer
    since = [p["since_transfer"] for p in run["points"]]
    assert since == [50, 100, 150, 199, 0, 50, 100, 150, 199, 0]


def test_capacitor_term_resets_at_transfer_and_held_reference_drifts(digits):
    args = _args()
    held = saw.follow(saw.build_trainer(digits, "nature2018-held-reference", OVERRIDES, args), args)
    leaking = saw.follow(saw.build_trainer(digits, "nature2018", OVERRIDES, args), args)
    for run in (held, leaking):
        for p in run["points"]:
            if p["since_transfer"] == 0:  # right after a transfer: g back at reset, only V_T mismatch left
                assert max(abs(v) for layer in p["capacitor_term_mean"] for v in layer) < 0.01
    # 200 examples x 20 us = 4 ms ~ 0.8 tau of leak: a held reference lets every cell's g rise,
    # and with the polarity flipped at each transfer the term's sign alternates between intervals
    ends = [p["capacitor_term_mean"][0] for p in held["points"] if p["since_transfer"] == 199]
    assert all(abs(v) > 0.01 for e in ends for v in e)
    assert all(a * b < 0 for a, b in zip(ends[0], ends[1]))
    leak_ends = [p["capacitor_term_mean"][0] for p in leaking["points"] if p["since_transfer"] == 199]
    assert max(abs(v) for e in leak_ends for v in e) < 0.5 * min(abs(v) for e in ends for v in e)
