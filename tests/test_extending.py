"""docs/extending.md: its code blocks run as written (a new device, registered and trained)."""

from __future__ import annotations

import re
from pathlib import Path

import torch

DOC = Path(__file__).resolve().parents[1] / "docs" / "extending.md"


def blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)


def test_the_device_example_registers_and_trains(capsys):
    code = blocks()
    assert len(code) == 2
    ns: dict = {}
    exec(compile(code[0], str(DOC), "exec"), ns)
    exec(compile(code[1], str(DOC), "exec"), ns)
    assert "on the digits stand-in" in capsys.readouterr().out
    from analogtrain.config import cell_kinds

    assert "linear-step" in cell_kinds()


def test_the_example_device_follows_its_equation():
    """Rounded pulses on the new device: W moves by exactly n * step / (uS per weight)."""
    ns: dict = {}
    exec(compile(blocks()[0], str(DOC), "exec"), ns)
    import analogtrain as at
    import analogtrain.nn as ann
    from analogtrain.optim import ChipSGD

    chip = at.get_preset("nature2018", {"chip": {"cell": {"kind": "linear-step"},
                                                 "update": {"pulse_mode": "rounded", "pulse_train_length": 1000},
                                                 "periphery": {"input_bits": 0, "output_bits": 0}}}).chip
    layer = ann.AnalogLinear(3, 2, chip=chip)
    opt = ChipSGD(layer.parameters(), lr=0.1)
    w0 = layer.tile.weights()[0].clone()
    x = torch.tensor([[0.5, 1.0, 0.25]])
    g = torch.tensor([[0.2, -0.1]])
    layer(x).backward(g)
    opt.step()
    k = 0.1 * layer.tile.scale_us / 0.05
    xa = torch.tensor([0.5, 1.0, 0.25, 1.0])
    n = torch.round(k * torch.outer(-g[0], xa))
    torch.testing.assert_close(layer.tile.weights()[0] - w0, n * 0.05 / layer.tile.scale_us, rtol=0, atol=1e-6)
